"""The report: the survey's tables and figures as a folder of HTML, LaTeX, CSV and PNG.

``build`` writes the folder (staged, then swapped in whole) and logs it to MLflow; ``tables``
holds the tables' text, ``figures`` picks and saves the figures that ``plots`` (the results)
and ``data_plots`` (the data and what the model made of them) draw, and ``page`` renders
``index.html`` and ``table.tex`` from the Jinja2 templates in ``templates/``.
"""
