"""A Flask app for gunicorn (root_conformance_servers): `/item/<n>` answers n bytes with a
length, `/stream/<n>` n lines from a generator (no length: chunked on HTTP/1.1), `POST /echo`
the size of its body (201), anything else Flask's 404."""
from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/item/<int:n>")
def item(n):
    return Response("f" * n, mimetype="text/plain")


@app.get("/stream/<int:n>")
def stream(n):
    def lines():
        for i in range(n):
            yield f"line {i:04d}\n"

    return Response(lines(), mimetype="text/plain")


@app.post("/echo")
def echo():
    return str(len(request.get_data())), 201
