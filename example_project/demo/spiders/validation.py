"""Stage 2: fetch every product URL that discovery found and record whether it works.

It reads discovery's output file, so it is checkpointed as a stage of its
own, and resumes independently of discovery. The input file is listed in
CHECKPOINT_INPUT_FILES: if it changes between two runs of this stage (say,
discovery was re-run), the resume refuses instead of mixing two inputs.
"""

from __future__ import annotations

import json

import scrapy


class ValidationSpider(scrapy.Spider):
    name = "validation"
    custom_settings = {"HTTPERROR_ALLOW_ALL": True}

    def __init__(self, input: str = "output/discovered.jsonl", **kwargs):
        super().__init__(**kwargs)
        self.input = input

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        # the settings are not frozen yet: record the input file the argument names
        crawler.settings.set("CHECKPOINT_INPUT_FILES", [spider.input], priority="spider")
        return spider

    async def start(self):
        with open(self.input) as lines:
            for line in lines:
                if line.strip():
                    yield scrapy.Request(json.loads(line)["url"], callback=self.check)

    def check(self, response):
        yield {
            "url": response.url,
            "status": response.status,
            "ok": response.status == 200,
            "name": response.css("h1::text").get(),
        }
