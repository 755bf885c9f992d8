"""Face pipeline building blocks shared by the detector and embedder services:
image decoding (``images``), MTCNN detection (``mtcnn``), quality
(``quality``), 5-point alignment (``align``), the embedding model
(``embedding``), the pinned model files and onnxruntime sessions
(``models``), and the dlib → ONNX converter (``dlib_convert``)."""
