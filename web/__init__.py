"""mof.web: ``mof-web BUNDLE -o DIR`` writes a static site that chats with the model inside the browser
tab (the JavaScript package in js/ on onnxruntime-web's WebAssembly build): no server code, nothing
leaves the machine. Imports mof.runtime (to verify the bundle) and reads mof.serve's stylesheet, so
the page looks as mof-serve's; never imported by either."""
