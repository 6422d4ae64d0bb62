"""``python fsapps_testapps.api <args>``: records the fsapi call shape and echoes the args."""

from fsapps_testapps import state


def fsapi(*argv):
    session, stream, env, args = argv if len(argv) == 4 else (None, None, None, None)
    state.record("fsapi", argc=len(argv), session=session, args=args,
                 command=env.getHeader("API-Command") if env is not None else None,
                 argument=env.getHeader("API-Command-Argument") if env is not None else None)
    stream.write(f"+OK {args}")
