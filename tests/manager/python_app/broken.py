print("booting")


class BootError(Exception):
    pass


raise BootError("cannot start")
