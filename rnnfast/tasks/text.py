from rnnfast.tasks import Task


class TextTask(Task):
    name = "text"
