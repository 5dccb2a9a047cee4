"""Nickname ↔ formal given-name pairs, used only to build *matching* keys.

Two sources feed the table:

* the ``nicknames`` package (Apache-2.0, Carlton Northern & Nick Crews): a hand-curated set of about
  2,700 English name → nickname pairs, maintained upstream — so English coverage is not ours to keep;
* :data:`SUPPLEMENT_CSV` below: the German and Spanish (and a few Dutch/French) pairs that the package
  does not carry, plus the core English pairs again, so the English behaviour our tests and the matcher
  rely on does not silently change if an upstream release drops a pair.

The supplement lives in this module as CSV text rather than as a data file beside it, so it ships in every
wheel without package-data configuration. Edit it like a CSV file: ``formal,nickname,lang``; names are
written as people write them (accents included); the key function folds them.

Nothing here ever overwrites a stored value: a nickname only widens the set of keys a first name is
blocked and compared under.
"""

from __future__ import annotations

import csv
import functools
import io

SUPPLEMENT_CSV = """\
formal,nickname,lang
William,Bill,en
William,Billy,en
William,Will,en
William,Willy,en
Robert,Bob,en
Robert,Bobby,en
Robert,Rob,en
Robert,Robbie,en
Elizabeth,Liz,en
Elizabeth,Lizzie,en
Elizabeth,Beth,en
Elizabeth,Betty,en
Elizabeth,Betsy,en
Elizabeth,Eliza,en
Elizabeth,Libby,en
Margaret,Peggy,en
Margaret,Maggie,en
Margaret,Meg,en
Margaret,Marge,en
James,Jim,en
James,Jimmy,en
James,Jamie,en
John,Jack,en
John,Johnny,en
Richard,Dick,en
Richard,Rick,en
Richard,Rich,en
Charles,Charlie,en
Charles,Chuck,en
Edward,Ed,en
Edward,Eddie,en
Edward,Ted,en
Edward,Ned,en
Thomas,Tom,en
Thomas,Tommy,en
Michael,Mike,en
Michael,Mikey,en
Joseph,Joe,en
Joseph,Joey,en
Katherine,Kate,en
Katherine,Kathy,en
Catherine,Cathy,en
Catherine,Kate,en
Christopher,Chris,en
Anthony,Tony,en
Jennifer,Jenny,en
Jennifer,Jen,en
Patricia,Pat,en
Patricia,Patty,en
Patricia,Trish,en
Susan,Sue,en
Deborah,Debbie,en
Rebecca,Becky,en
Alexander,Alex,en
Alexander,Sandy,en
Daniel,Dan,en
Daniel,Danny,en
David,Dave,en
Steven,Steve,en
Stephen,Steve,en
Nicholas,Nick,en
Benjamin,Ben,en
Samuel,Sam,en
Matthew,Matt,en
Andrew,Andy,en
Andrew,Drew,en
Henry,Harry,en
Henry,Hank,en
Lawrence,Larry,en
Frederick,Fred,en
Dorothy,Dot,en
Mary,Molly,en
Mary,Polly,en
Sarah,Sally,en
Victoria,Vicky,en
Abigail,Abby,en
Albert,Al,en
Ronald,Ron,en
Donald,Don,en
Kenneth,Ken,en
Timothy,Tim,en
Gregory,Greg,en
Jeffrey,Jeff,en
Geoffrey,Geoff,en
Philip,Phil,en
Francis,Frank,en
Johannes,Hans,de
Johann,Hans,de
Johannes,Hannes,de
Johannes,Jo,de
Josef,Sepp,de
Josef,Seppl,de
Josef,Beppo,de
Joseph,Sepp,de
Friedrich,Fritz,de
Friedrich,Friedel,de
Heinrich,Heinz,de
Heinrich,Heini,de
Elisabeth,Lisa,de
Elisabeth,Liesl,de
Elisabeth,Lies,de
Elisabeth,Elli,de
Elisabeth,Sisi,de
Elisabeth,Else,de
Margarete,Grete,de
Margarete,Gretel,de
Margarete,Gretchen,de
Margarethe,Grete,de
Katharina,Kathi,de
Katharina,Käthe,de
Katharina,Kati,de
Barbara,Bärbel,de
Barbara,Babsi,de
Magdalena,Lena,de
Magdalena,Leni,de
Helene,Leni,de
Christine,Christel,de
Christiane,Christel,de
Alexander,Sascha,de
Wilhelm,Willi,de
Wilhelm,Willy,de
Ludwig,Lutz,de
Ludwig,Luggi,de
Andreas,Andi,de
Andreas,Anderl,de
Matthias,Hias,de
Matthias,Matze,de
Bernhard,Bernd,de
Gertrud,Trude,de
Gertrud,Gerti,de
Walburga,Burgi,de
Theresia,Resi,de
Therese,Resi,de
Franziska,Franzi,de
Franz,Franzl,de
Georg,Schorsch,de
Susanne,Susi,de
Sebastian,Basti,de
Maximilian,Max,de
Maximilian,Maxi,de
Stefanie,Steffi,de
Ulrich,Ulli,de
Michael,Michi,de
Michael,Micha,de
Rudolf,Rudi,de
Wolfgang,Wolfi,de
Jürgen,Jogi,de
Hans-Joachim,Achim,de
Joachim,Achim,de
Dietrich,Dieter,de
Gottfried,Friedel,de
Gabriele,Gabi,de
Cornelia,Conny,de
Annemarie,Anne,de
Walter,Walti,de
Nikolaus,Klaus,de
Nikolaus,Niklas,de
Francisco,Paco,es
Francisco,Pancho,es
Francisco,Curro,es
Francisco,Fran,es
Francisco,Quico,es
Francisca,Paca,es
Francisca,Paquita,es
José,Pepe,es
José,Pepito,es
José,Chepe,es
José María,Chema,es
José María,Josema,es
José Luis,Joselu,es
José Antonio,Joseán,es
Josefa,Pepa,es
Josefa,Pepita,es
Dolores,Lola,es
Dolores,Loli,es
Guadalupe,Lupe,es
Guadalupe,Lupita,es
Concepción,Concha,es
Concepción,Conchita,es
Rosario,Charo,es
Consuelo,Chelo,es
Ignacio,Nacho,es
Jesús,Chus,es
Jesús,Chuy,es
María Jesús,Chus,es
Manuel,Manolo,es
Manuel,Manu,es
Enrique,Quique,es
Antonio,Toño,es
Antonio,Toni,es
Alejandro,Álex,es
Alejandro,Jandro,es
Eduardo,Edu,es
Fernando,Nando,es
Guillermo,Memo,es
Guillermo,Guille,es
Roberto,Beto,es
Alberto,Beto,es
Isabel,Isa,es
Isabel,Chabela,es
Mercedes,Merche,es
Soledad,Sole,es
Pilar,Pili,es
Inmaculada,Inma,es
Montserrat,Montse,es
Purificación,Puri,es
Encarnación,Encarna,es
Remedios,Reme,es
Margarita,Marga,es
Ramón,Moncho,es
Gregorio,Goyo,es
Santiago,Santi,es
Salvador,Salva,es
Cristina,Cris,es
Teresa,Tere,es
Luis,Lucho,es
Rafael,Rafa,es
Rodrigo,Rodri,es
Javier,Javi,es
Daniel,Dani,es
Sebastián,Sebas,es
Nicolás,Nico,es
María del Carmen,Mamen,es
María del Carmen,Maricarmen,es
María José,Majo,es
María Isabel,Maribel,es
María Luisa,Marisa,es
María Teresa,Maite,es
María Teresa,Maritere,es
Juan,Juanito,es
Alfonso,Poncho,es
Asunción,Chon,es
Anunciación,Nuncia,es
Johannes,Jan,nl
Cornelis,Kees,nl
Hendrik,Henk,nl
Jacobus,Koos,nl
Gerardus,Gerard,nl
Wilhelmina,Mien,nl
Jean-Baptiste,JB,fr
Marie-Thérèse,Maïté,fr
"""
"""``formal,nickname,lang`` rows: German, Spanish and a few Dutch/French pairs, plus core English ones."""


@functools.cache
def nickname_pairs() -> tuple[tuple[str, str], ...]:
    """All (formal, nickname) pairs, as written, from the ``nicknames`` package and the supplement.

    Cached: the package reads its CSV from disk once per process, and callers fold the names themselves
    (this module deliberately knows nothing about normalization, so there is no import cycle).
    """
    pairs: list[tuple[str, str]] = []
    try:
        from nicknames import name_triplets  # Apache-2.0; see module docstring
    except ImportError:  # pragma: no cover - the package is a declared dependency
        triplets: list[tuple[str, str]] = []
    else:
        triplets = [(t.name1, t.name2) for t in name_triplets() if t.relationship == "has_nickname"]
    pairs.extend(triplets)
    reader = csv.DictReader(io.StringIO(SUPPLEMENT_CSV))
    for row in reader:
        pairs.append((row["formal"], row["nickname"]))
    return tuple(pairs)


def supplement_rows() -> list[dict[str, str]]:
    """The supplement table as parsed rows (for tests and for reviewing coverage per language)."""
    return list(csv.DictReader(io.StringIO(SUPPLEMENT_CSV)))
