"""moto's server, answering one request at a time.

moto_server runs werkzeug with threaded=True, and moto's TransactWriteItems
checks its conditions and then writes without a lock, so two concurrent
transactions guarded by the same condition can both succeed: something real
DynamoDB never allows (a transaction is serializable with every other write
to its items). Tests of concurrent conditional writes run against this
server, which restores that isolation by serialising requests; clients stay
concurrent, so every interleaving of their read-then-write steps still
happens. Arguments are moto_server's (-H host -p port).
"""

import moto.server

_run_simple = moto.server.run_simple


def _serial_run_simple(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


moto.server.run_simple = _serial_run_simple

if __name__ == "__main__":
    moto.server.main()
