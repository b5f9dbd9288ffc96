class EventService:
    def __init__(self, hs):
        self.hs = hs

    async def start(self):
        pass

    async def stop(self):
        pass
