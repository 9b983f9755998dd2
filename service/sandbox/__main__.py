"""``python -m service.sandbox [--port N] [--reveal N] [--publish-every S] [--seed N]``: serve the sandbox until
Ctrl-C. Past the scripted timeline, new posts are generated (the same ones for the same seed)."""

from __future__ import annotations

import argparse
import logging
import threading

from .server import Sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788, help="0 picks a free port (default 8788)")
    parser.add_argument("--reveal", type=int, default=None, help="show only the oldest N posts at first")
    parser.add_argument("--publish-every", type=float, default=0, metavar="S",
                        help="reveal one more post every S seconds (0: never)")
    parser.add_argument("--cap", type=int, default=800, help="newest posts the timeline returns (API: 800)")
    parser.add_argument("--photo-scale", type=float, default=4.0, help="orig photo size / sample size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the posts generated past the scripted ones")
    parser.add_argument("--token-ttl", type=float, default=7200.0, metavar="S",
                        help="seconds an OAuth 2.0 access token from POST /2/oauth2/token lasts (default 7200)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    sandbox = Sandbox(host=args.host, port=args.port, reveal=args.reveal, cap=args.cap, photo_scale=args.photo_scale,
                      seed=args.seed, oauth2_token_ttl=args.token_ttl)
    sandbox.start()
    print(f"X API sandbox on {sandbox.url}  (me: @{sandbox.me['username']}, id {sandbox.me['id']})")
    print(f"  {len(sandbox.posts())} posts visible, {sandbox.remaining} scripted ones to publish, then generated "
          f"ones without end (POST {sandbox.url}/_sandbox/publish?count=N)")
    print("  point nijifeed at it:")
    print(f"    export NIJIFEED_X_API_BASE_URL={sandbox.url}")
    print("    export NIJIFEED_X_BEARER_TOKEN=sandbox-user-token   # any user token is accepted")
    print("    # or: export NIJIFEED_X_CLIENT_ID=any-client-id; nijifeed login   (consent is automatic)")
    print(f"  faults: curl -X POST {sandbox.url}/_sandbox/faults -d '{{\"kind\": \"503\", \"times\": 2}}'")
    stop = threading.Event()
    try:
        while not stop.wait(args.publish_every or 3600):
            if args.publish_every:
                ids = sandbox.publish(1)
                print(f"published {ids[0]} ({sandbox.remaining} scripted left)")
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
