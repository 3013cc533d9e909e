"""R1: bare FastAPI answering constant JSON (the ceiling of any endpoint on this stack)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, world!"}
