"""FER+'s expression classes and face size: constants without torch, for light importers (the demo corpus,
memobert-train-fer's argument handling)."""

__all__ = ["FER_CLASSES", "FACE_SIZE"]

#: FER+ expression classes, in the order of the FER+ vote columns
FER_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
#: FER2013 / FER+ faces are 48x48 greyscale
FACE_SIZE = 48
