"""Tools around kvmm's key maps: convert a Hugging Face checkpoint to a Keras
``.weights.h5`` file and check the result against the reference implementation."""
