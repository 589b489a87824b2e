"""How much longer than the product's own bound a test lets an answer take.

A bound in a test is the configured timeout it exercises plus this margin: on a loaded 2-core
host (parallel test workers, their servers and databases) an answer can wait seconds for the
CPU after the product has already decided it.
"""

SCHEDULING_MARGIN_SECONDS = 3.0
