print("run: not yet")
