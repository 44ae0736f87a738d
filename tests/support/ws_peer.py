# SPDX-License-Identifier: MIT
"""A python-websockets (Debian python3-websockets) server for the client tests.

    ws_peer.py [--host H] [--port P] [--cert C --key K [--client-ca CA]] [--compression]
               [--subprotocols a,b] [--close CODE [REASON]] [--close-after SECONDS]

Prints "listening PORT" once ready. Every connection gets the same treatment: by default an
echo (a message "fragments" is answered with a three-fragment message, "close CODE REASON"
closes with that code); --close closes every connection right after the handshake. The
chosen subprotocol and the request's headers of interest are printed as "open ..." lines.
"""

import argparse
import asyncio
import ssl
import sys

import websockets


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca", help="require a client certificate signed by this CA")
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--subprotocols")
    parser.add_argument("--close", nargs="+")
    parser.add_argument("--close-after", type=float, default=0,
                        help="seconds to wait before the --close")
    args = parser.parse_args()

    async def handler(ws, path=None):
        headers = ws.request_headers
        print(f"open path={ws.path} subprotocol={ws.subprotocol} "
              f"origin={headers.get('Origin')} x-test={headers.get('X-Test')} "
              f"ext={headers.get('Sec-WebSocket-Extensions')}", flush=True)
        if args.close:
            await asyncio.sleep(args.close_after)
            await ws.close(int(args.close[0]), " ".join(args.close[1:]))
            return
        try:
            async for message in ws:
                if message == "fragments":
                    await ws.send(iter(["frag", "men", "ted"]))
                elif isinstance(message, str) and message.startswith("close "):
                    parts = message.split(" ", 2)
                    await ws.close(int(parts[1]), parts[2] if len(parts) > 2 else "")
                else:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass

    async def serve():
        context = None
        if args.cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.cert, args.key)
            if args.client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(args.client_ca)
        subprotocols = args.subprotocols.split(",") if args.subprotocols else None
        server = await websockets.serve(handler, args.host, args.port, ssl=context,
                                        compression="deflate" if args.compression else None,
                                        subprotocols=subprotocols, max_size=2**24)
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await asyncio.Future()

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
