print("convert: not yet")
