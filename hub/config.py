"""What `adcsr hub` can be asked for (light: the CLI parsers read it without loading the client)."""

DEFAULT_DEVICE = "Samsung Galaxy S25 (Family)"
# SoC names accepted as a device: the phones AI Hub lists for them (FACTS §4)
SOC_DEVICES = {"SM8750": "Samsung Galaxy S25 (Family)", "SM8650": "Samsung Galaxy S24 (Family)"}
RUNTIMES = ("qnn_context_binary", "precompiled_qnn_onnx", "qnn_dlc", "tflite")
QUANTIZE_MODES = ("hub", "local", "none")
STEPS = ("compile", "profile", "infer", "run")
