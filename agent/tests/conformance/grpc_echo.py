"""A grpcio (Python, PyPI) unary echo service without generated code, for the conformance tests.
  grpc_echo.py server PORT   serves /demo.Echo/Say (replies b"echo:" + request)
  grpc_echo.py client PORT   waits for a line on stdin (so that the agent finds it first), then
                             makes 10 calls one after another, 5 with 200 KB messages (many
                             16 KiB DATA frames each way), and 30 from 10 threads at once, all on
                             one channel, and prints "done"."""
import sys
from concurrent import futures

import grpc


def say(request, context):
    return b"echo:" + request


def serve(port):
    handler = grpc.method_handlers_generic_handler("demo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def call(port):
    print("ready", flush=True)
    sys.stdin.readline()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        say_rpc = channel.unary_unary("/demo.Echo/Say")
        for i in range(10):
            assert say_rpc(b"x%d" % i) == b"echo:x%d" % i
        for i in range(5):
            big = b"%d" % i * 200_000
            assert say_rpc(big) == b"echo:" + big
        with futures.ThreadPoolExecutor(10) as pool:
            for i, reply in enumerate(pool.map(lambda i: say_rpc(b"y%d" % i), range(30))):
                assert reply == b"echo:y%d" % i
    print("done", flush=True)


if __name__ == "__main__":
    {"server": serve, "client": call}[sys.argv[1]](int(sys.argv[2]))
