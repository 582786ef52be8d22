"""A real HTTPS exporter for the tunnel's TLS tests: serves one file over TLS (HTTP/1.1,
keep-alive), optionally requiring a client certificate signed by a given CA.

Usage: tls_exporter.py CERT KEY PAGE [CLIENT_CA]
Prints the port it listens on (127.0.0.1, chosen by the OS) as its first line of output.
"""

import http.server
import ssl
import sys


def main() -> None:
    cert, key, page_path = sys.argv[1:4]
    client_ca = sys.argv[4] if len(sys.argv) > 4 else None
    with open(page_path, "rb") as f:
        page = f.read()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write("tls_exporter: " + fmt % args + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
