"""``ipymeet serve --jupyterhub`` (service.py) and the kernels' client of it (client.py); the
names both use are in names.py, so neither imports the other."""
