"""vif.operator: reconciles InferenceModel objects into a served, scaled, monitored model."""
