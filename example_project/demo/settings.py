BOT_NAME = "demo"
SPIDER_MODULES = ["demo.spiders"]

# The one line that makes every crawl of this project crash-proof.
ADDONS = {"scrapy_resume.Addon": 0}

# Checkpoints go to .scrapy/checkpoints/<stage>.sqlite by default; the demo
# keeps everything it writes under output/.
CHECKPOINT_DIR = "output/checkpoints"

ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
CONCURRENT_REQUESTS = 8
RETRY_TIMES = 1
