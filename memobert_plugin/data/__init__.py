"""Feature store, vocabulary, masking, folds, and the datasets the tasks compose.

The package itself imports nothing, so that a light module here (folds, utterance_meta)
does not pull in torch and fairseq; import the module you need.
"""
