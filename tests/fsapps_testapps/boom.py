"""Entry points that raise: mod_python3 must log and carry on."""


def handler(session, args):
    session.setVariable("boom_before", "yes")
    raise RuntimeError("boom in handler")


def fsapi(session, stream, env, args):
    raise RuntimeError("boom before write")


def partial(session, stream, env, args):
    stream.write("+OK partial")
    raise RuntimeError("boom after write")


def silent(session, stream, env, args):
    return "a return value is ignored"
