"""The tensor model: backbone, action expert, critics and advantage conditioning, composed by `PiStarRECAP`."""
