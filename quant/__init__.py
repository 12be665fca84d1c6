"""mof.quant: accuracy of one decoding against another (stream vs exact at export, int8 vs fp32),
and int8 variants of a bundle's window and step graphs (mof-quantize, mof-export --int8)."""
