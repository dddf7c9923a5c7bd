"""The EmoVid benchmark (paper §9, Table 3): FVD, CLIP score, SD score, Flicker, EA-2cls and EA-8cls."""
