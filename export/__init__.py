"""W8A16 quantization and export to QNN (Hexagon), ExecuTorch and Core ML, each verified against PyTorch."""
