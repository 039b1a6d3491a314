"""The bottom layer: what every other package shares and nothing else.

Types (``Doc``, ``Query``, ``Hit``, ``Candidates``), errors, cache paths, declared stage
parameters, the pipeline node algebra every stage extends, the stage registry and the
executor that runs pipelines. Nothing here imports from any other ``cascade`` package.
"""
