"""The reproduction report: runs over seeds, statistics, figures, the document, published values."""
