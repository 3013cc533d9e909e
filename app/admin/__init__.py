"""The admin site (SQLAdmin) at /admin: `install_admin` in `app/admin/site.py`."""
