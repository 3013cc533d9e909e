"""Every route module is registered here: versioned resources under /api/v1."""

from fastapi import APIRouter

from app.routes import auth, health, user

api_v1_router = APIRouter(prefix="/api/v1")
api_v1_router.include_router(user.router)

router = APIRouter()
router.include_router(health.router)
router.include_router(auth.router)
router.include_router(api_v1_router)
