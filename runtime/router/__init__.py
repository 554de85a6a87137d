"""vif-router: one HTTP front for a model's replicas, routing by prefix, load or round robin.

Nothing here imports vLLM or torch: the router starts in a fraction of a second beside (or instead of) a runtime.
"""
