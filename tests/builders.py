"""Small real inputs for the tests: prose that passes FineWeb's filters, pages, WARCs, JSONL, lakes of documents."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.lake import (
    DOCUMENTS_DEDUP,
    DOCUMENTS_SCHEMA,
    Lake,
    RunRecord,
    fingerprint,
    lmforge_version,
    refresh_manifest,
    utc_now,
    write_table,
)

# Original paragraphs, long enough (and written plainly enough) to pass the Gopher, C4 and FineWeb rules.
PROSE: dict[str, list[str]] = {
    "en": [
        "The village library opens early on market days, and the farmers who come to town often stop there "
        "before they sell their vegetables.",
        "Most of them borrow books about the weather, because a good harvest depends on knowing when the rain "
        "will come and how long it will stay.",
        "The librarian keeps a notebook with the names of the regular visitors and the titles that they have "
        "asked for during the past year.",
        "Children arrive in the afternoon, when school is over, and they read comics at the long wooden table "
        "near the window that looks over the square.",
        "In winter the room is warm and quiet, and some of the older people spend whole afternoons there with "
        "a newspaper and a cup of tea from the machine.",
        "Nobody remembers exactly when the library was founded, but the oldest stamp inside the books shows a "
        "date from the years before the war.",
    ],
    "fr": [
        "La bibliothèque du village ouvre tôt les jours de marché, et les agriculteurs qui viennent en ville "
        "s'y arrêtent souvent avant de vendre leurs légumes.",
        "La plupart d'entre eux empruntent des livres sur le temps qu'il fera, car une bonne récolte dépend de "
        "la pluie et du moment où elle arrive.",
        "La bibliothécaire tient un carnet avec les noms des visiteurs réguliers et les titres qu'ils ont "
        "demandés pendant toute l'année passée.",
        "Les enfants arrivent l'après-midi, après l'école, et ils lisent des bandes dessinées à la grande table "
        "en bois près de la fenêtre qui donne sur la place.",
        "En hiver la salle est chaude et calme, et certaines personnes âgées y passent des après-midi entiers "
        "avec un journal et une tasse de thé.",
        "Personne ne se souvient de la date exacte de sa fondation, mais le plus vieux tampon dans les livres "
        "montre une année d'avant la guerre.",
    ],
    "de": [
        "Die Bibliothek des Dorfes öffnet an Markttagen sehr früh, und die Bauern, die in die Stadt kommen, "
        "halten dort oft an, bevor sie ihr Gemüse verkaufen.",
        "Die meisten von ihnen leihen Bücher über das Wetter aus, denn eine gute Ernte hängt davon ab, wann "
        "der Regen kommt und wie lange er bleibt.",
        "Die Bibliothekarin führt ein Heft mit den Namen der Stammgäste und den Titeln, nach denen sie im "
        "letzten Jahr gefragt haben.",
        "Die Kinder kommen am Nachmittag nach der Schule und lesen Comics an dem langen Holztisch neben dem "
        "Fenster, das auf den Platz hinausgeht.",
        "Im Winter ist der Raum warm und ruhig, und manche älteren Leute verbringen dort ganze Nachmittage mit "
        "einer Zeitung und einer Tasse Tee.",
        "Niemand weiß mehr genau, wann die Bibliothek gegründet wurde, aber der älteste Stempel in den Büchern "
        "zeigt ein Jahr aus der Zeit vor dem Krieg.",
    ],
    "ja": [
        "村の図書館は市場の日には朝早く開き、町に来た農家の人たちは野菜を売る前によくそこに立ち寄ります。",
        "多くの人は天気についての本を借ります。良い収穫は、雨がいつ降り、どれくらい続くかを知ることにかかっているからです。",
        "司書は常連の名前と、去年一年の間に頼まれた本の題名を書いたノートを持っています。",
        "子どもたちは学校が終わった午後にやって来て、広場が見える窓のそばの長い木の机で漫画を読みます。",
        "冬になると部屋は暖かく静かで、お年寄りの中には新聞とお茶を手に、午後をまるごとそこで過ごす人もいます。",
        "図書館がいつできたのかを正確に覚えている人はいませんが、本の中の一番古い印は戦争の前の年を示しています。",
    ],
}


def page(lang: str, title: str = "Village library", extra: str = "") -> str:
    """A plain HTML page around the prose of one language."""
    body = "\n".join(f"<p>{p}</p>" for p in PROSE[lang])
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><nav><a href='/'>Home</a></nav><article><h1>{title}</h1>\n{body}\n{extra}</article>"
        f"<footer>Contact</footer></body></html>"
    )


def plain(lang: str) -> str:
    return "\n".join(PROSE[lang])


def response(
    uri: str,
    body: bytes,
    content_type: str | None = "text/html; charset=utf-8",
    payload_type: str | None = "text/html",
) -> dict:
    return {"uri": uri, "body": body, "content_type": content_type, "payload_type": payload_type}


def write_warc(path: Path, records: Iterable[dict], gz: bool = True) -> Path:
    """A WARC with a warcinfo record and one `response` record per item of `records`."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gz)
    writer.write_record(writer.create_warcinfo_record(path.name, {"software": "lmforge-tests"}))
    for r in records:
        headers = [("Content-Length", str(len(r["body"])))]
        if r["content_type"]:
            headers.append(("Content-Type", r["content_type"]))
        warc_headers = {"WARC-Identified-Payload-Type": r["payload_type"]} if r["payload_type"] else {}
        record = writer.create_warc_record(
            r["uri"],
            "response",
            payload=io.BytesIO(r["body"]),
            http_headers=StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1"),
            warc_headers_dict=warc_headers,
        )
        writer.write_record(record)
    path.write_bytes(buffer.getvalue())
    return path


def write_jsonl(path: Path, rows: Iterable[dict | str | bytes], gz: bool = False) -> Path:
    """JSONL where a dict becomes a JSON line and str/bytes are written as they are (to plant bad lines)."""
    lines = []
    for row in rows:
        if isinstance(row, dict):
            lines.append(json.dumps(row, ensure_ascii=False).encode())
        else:
            lines.append(row if isinstance(row, bytes) else row.encode())
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# FLORES-style codes of the languages PROSE holds
LANGS = {"eng_Latn": "en", "fra_Latn": "fr", "deu_Latn": "de", "jpn_Jpan": "ja"}


def document_rows(lang: str, count: int) -> list[dict]:
    """`count` distinct documents of one language, built from the builders' prose (rotated, numbered)."""
    prose = PROSE[LANGS[lang]]
    rows = []
    for i in range(count):
        body = " ".join(prose[(i + k) % len(prose)] for k in range(1 + i % 4))
        text = f"{body} ({lang} {i}: {i * 37 % 1000} {i % 7})"
        rows.append({"id": f"{lang}-{i}", "text": text, "lang": lang, "n_chars": len(text)})
    return rows


def run_id(label: str) -> str:
    """The run id of shards a test writes by hand: a fingerprint, like a stage's, so that a shard
    named `<run_id>_00000.parquet` belongs to it."""
    return fingerprint({"test run": label})


def list_run(lake: Lake, run: str, *datasets: str, stage: str = "ingest") -> None:
    """Record `run` as finished in the manifests of `datasets`, as a stage does once its shards are
    written: readers see a dataset's shards only once its manifest lists their run."""
    now = utc_now()
    record = RunRecord(
        run=run, stage=stage, parameters={}, inputs=[], started=now, finished=now, lmforge_version=lmforge_version()
    )
    for dataset in datasets:
        refresh_manifest(lake, dataset, [record])


def documents_lake(root: Path, counts: dict[str, int], dataset: str = DOCUMENTS_DEDUP) -> Lake:
    """A lake whose `dataset` holds `counts[lang]` documents per language, written by one listed run."""
    lake = Lake.at(root)
    run = run_id("documents")
    for lang, n in counts.items():
        table = pa.Table.from_pylist(document_rows(lang, n), schema=DOCUMENTS_SCHEMA)
        write_table(lake, dataset, f"lang={lang}/{run}_00000.parquet", table)
    list_run(lake, run, dataset)
    return lake


def tokenized_lake(root: Path, tokenizer: str = "tok") -> Lake:
    """A lake with documents in three languages, a 400-token BPE `tokenizer` trained on them, and its
    tokens for training (`tokens/<tokenizer>/documents/`, 10% held out): what the trainer reads."""
    from model.tokens import TokenizeConfig, tokenize_dataset
    from tokenizer_training.train import TokenizerConfig, train_tokenizer

    lake = documents_lake(root, {"eng_Latn": 120, "fra_Latn": 60, "deu_Latn": 30})
    train_tokenizer(lake, TokenizerConfig(name=tokenizer, vocab_size=400))
    tokenize_dataset(lake, TokenizeConfig(tokenizer=tokenizer, val_fraction=0.1), "documents")
    return lake


def chat_tokenizer_folder(folder: Path) -> Path:
    """A tokenizer folder as `lmforge tokenizer train` writes it (ChatML template, special tokens, its
    manifest), a 600-token BPE trained on the builders' prose."""
    from tokenizer_training.train import TokenizerConfig, bpe_trainer, build_tokenizer, save_transformers_folder

    tokenizer = build_tokenizer()
    texts = [p for paragraphs in PROSE.values() for p in paragraphs]
    tokenizer.train_from_iterator(texts, bpe_trainer(TokenizerConfig(name="t", vocab_size=600, min_frequency=1)))
    save_transformers_folder(tokenizer, str(folder))
    (folder / "_manifest.json").write_text('{"name": "t"}\n')
    return folder


def flow_run_artifacts(state: Any) -> list:
    """The Prefect artifacts the flow run behind `state` (a `return_state=True` result) published."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list:
        async with get_client() as client:
            of_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
            return await client.read_artifacts(artifact_filter=of_this_run)

    return asyncio.run(read())
