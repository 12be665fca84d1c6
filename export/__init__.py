"""mof.export: TensorFlow checkpoint -> ONNX bundle. Needs the [export] extra; TF is imported lazily."""
