// Quant: formats, quantizers, the .qlm file format, checkpoint readers.
