"""``deepfake-eval``: a checkpoint judged the way it is served (through ``/predict/`` itself)."""
