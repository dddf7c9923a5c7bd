"""The build's stages between sources and shards: segment, attributes, annotate, captions, splits."""
