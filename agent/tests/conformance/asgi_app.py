"""A FastAPI app served by uvicorn (one asyncio event loop) whose handler awaits an httpx call
downstream, for the conformance tests: GET /call/<i> calls GET /down/<i> on DOWN_PORT.
Run: uvicorn asgi_app:app --app-dir agent/tests/conformance --port PORT"""
import asyncio
import os

import httpx
from fastapi import FastAPI

app = FastAPI()
DOWN = int(os.environ["DOWN_PORT"])


@app.get("/call/{i}")
async def call(i: int):
    # Let the other requests in flight reach their handlers too.
    await asyncio.sleep(0.02)
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{DOWN}/down/{i}")
    return {"i": i, "down": r.status_code}
