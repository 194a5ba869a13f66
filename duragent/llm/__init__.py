"""Language model providers behind one streaming protocol."""
