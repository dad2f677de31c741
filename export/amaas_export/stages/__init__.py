"""The export's stages, each a function from a config, paths and the previous stage's result to a frozen result:

    data.load          -> Prepared          the dataset at the model's geometry, and its preprocessing
    source.float_model -> FloatModel        trained, loaded or imported; exported to ONNX and parity-checked
    prune.pruned       -> Pruned            channels removed, fine-tuned, gated on the accuracy drop
    quantize.int8      -> Quantized         static INT8 (or auto's pick, or the float model), gated
    serving.finalize   -> ServingFile       normalisation folded in if faster, ORT's rewrites baked in
    package.package    -> Packaged          manifest, golden samples, card, chart, recipe, moved into place

``amaas_export.pipeline`` runs them in that order; nothing passes between them but these results.
"""
