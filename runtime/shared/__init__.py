"""What the runtime's app and vif-router share: reading bodies, API keys, the inference paths.

The layer below both: it imports neither (nor pydantic, vLLM or torch), and the router imports nothing of the runtime
but this, so the router runs from the runtime's images without loading the engine's stack
(tests/test_layers.py checks it).
"""
