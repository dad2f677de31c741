"""The artifact contract: the one package both the export pipeline and the serving runtime import.

It knows no web framework and no logging library (export imports nothing else from serving):

* ``manifest``: the manifest (labels, input, preprocessing, task, metrics, files) read, written and verified;
* ``imaging``: untrusted image bytes to the model's pixels, bounded;
* ``preprocessing``: pixels to the tensor the model takes;
* ``session``: the ONNX Runtime session both sides measure and serve with;
* ``tasks``: what the model does, as strategies (classification today);
* ``golden``: the samples a deployment is checked against before traffic.
"""
