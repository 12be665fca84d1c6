"""mof.quant: int8 variants of a bundle's graphs (issue: INT8 variants). Not built yet."""
