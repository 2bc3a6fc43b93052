"""Analysis stages on arrays: motion gate, detector (ONNX), tracker, rules, alert lifecycle, and
``camera`` tying them together per camera. Imports config only: no Redis, web, threads or processes.
"""
