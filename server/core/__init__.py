"""The signalling core every deployment shares: the aiohttp application, the Socket.IO handlers of
both dialects, the rooms, the checks, the access model and the settings. It imports nothing from
the folders beside it; what they add (the kernels attached to a shared signaller, a hub's users,
rooms in Redis) they give it through the interfaces it defines (``KernelDoor``, ``RoomStore``)."""
