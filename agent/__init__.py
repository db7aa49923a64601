"""The gateway agent: sensor sources, windowing, ONNX inference, SQLite log, outbox, model store.

It must stay light: nothing here imports scikit-learn, scipy or fastapi (tests/agent/test_imports.py).
"""
