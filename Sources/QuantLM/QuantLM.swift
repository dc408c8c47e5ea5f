/// QuantLM's Swift API for apps: `import QuantLM`, then `Model(path:options:)` and
/// `model.generate(_:_:)` (see Sources/Runtime/API/Model.swift). The declarations live in
/// Runtime, whose only public ones they are; this module gives them a name that does not
/// collide with an app's own "Runtime".
@_exported import Runtime
