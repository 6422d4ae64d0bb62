"""An xml-handler-script whose answer the test chooses through ``state.config["xml_mode"]``."""

from fsapps_testapps import state


def xml_fetch(*argv):
    params = argv[0]
    state.record("xml_fetch", argc=len(argv), args=argv[1:],
                 section=params.getHeader("section"), user=params.getHeader("user"),
                 action=params.getHeader("action"))
    mode = state.config.get("xml_mode", "empty")
    if mode == "raise":
        raise RuntimeError("xml_fetch boom")
    if mode == "none":
        return None
    if mode == "bytes":
        return b"<document/>"
    return ""
