"""Face pipeline building blocks shared by the detector and embedder services:
image decoding, MTCNN detection, quality, 5-point alignment, model profiles,
and the dlib → ONNX converter."""
