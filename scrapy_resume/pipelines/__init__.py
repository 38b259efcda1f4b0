"""Item pipelines that write exactly once across crashes (see sql.py)."""

from scrapy_resume.pipelines.sql import SQLPipeline

__all__ = ["SQLPipeline"]
