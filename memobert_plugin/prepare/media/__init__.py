"""Reading media: audio decoding and voice activity, video frames, faces and the active speaker."""
