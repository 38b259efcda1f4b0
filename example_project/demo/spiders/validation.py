"""Stage 2: fetch every product URL that discovery found and record whether it works.

It reads discovery's output file, so it is checkpointed as a stage of its
own, and resumes independently of discovery.
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
