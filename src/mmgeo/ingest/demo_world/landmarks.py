"""The demo world's named places: real US landmarks (WGS84), with a category and a line for their article."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Landmark:
    name: str
    lat: float
    lon: float
    category: str
    place: str
    blurb: str


LANDMARKS: tuple[Landmark, ...] = (
    Landmark("Empire State Building", 40.7484, -73.9857, "skyscraper", "Manhattan, New York City", "an Art Deco skyscraper that was the world's tallest building for forty years"),
    Landmark("Statue of Liberty", 40.6892, -74.0445, "monument", "Liberty Island, New York Harbor", "a colossal copper statue of a robed woman holding a torch, a gift from France"),
    Landmark("Brooklyn Bridge", 40.7061, -73.9969, "bridge", "New York City", "a hybrid cable-stayed suspension bridge over the East River with Gothic stone towers"),
    Landmark("Bethesda Terrace", 40.7740, -73.9708, "park", "Central Park, New York City", "a two-level terrace with a fountain and an angel statue overlooking the lake"),
    Landmark("Chrysler Building", 40.7516, -73.9755, "skyscraper", "Midtown Manhattan, New York City", "an Art Deco skyscraper crowned by a terraced stainless-steel spire"),
    Landmark("Flatiron Building", 40.7411, -73.9897, "skyscraper", "Manhattan, New York City", "a triangular steel-framed building on a wedge-shaped block"),
    Landmark("Grand Central Terminal", 40.7527, -73.9772, "railway station", "Midtown Manhattan, New York City", "a commuter rail terminal with a celestial ceiling mural in its main concourse"),
    Landmark("Lincoln Memorial", 38.8893, -77.0502, "memorial", "National Mall, Washington, D.C.", "a neoclassical temple with a seated marble statue of Abraham Lincoln"),
    Landmark("Washington Monument", 38.8895, -77.0353, "monument", "National Mall, Washington, D.C.", "a marble obelisk, the tallest stone structure in the world"),
    Landmark("United States Capitol", 38.8899, -77.0091, "government building", "Capitol Hill, Washington, D.C.", "the domed seat of the United States Congress"),
    Landmark("White House", 38.8977, -77.0365, "government building", "Washington, D.C.", "the white-painted residence and workplace of the president"),
    Landmark("Jefferson Memorial", 38.8814, -77.0365, "memorial", "Tidal Basin, Washington, D.C.", "a round neoclassical memorial with a bronze statue of Thomas Jefferson"),
    Landmark("Golden Gate Bridge", 37.8199, -122.4783, "bridge", "San Francisco, California", "an International Orange suspension bridge spanning the strait into the bay"),
    Landmark("Alcatraz Island", 37.8267, -122.4230, "island", "San Francisco Bay, California", "a small island with a lighthouse and a former federal prison"),
    Landmark("Coit Tower", 37.8024, -122.4058, "tower", "Telegraph Hill, San Francisco", "a slender white concrete tower with Depression-era murals"),
    Landmark("Palace of Fine Arts", 37.8029, -122.4484, "monument", "Marina District, San Francisco", "a rotunda and colonnade beside a lagoon, built for the 1915 exposition"),
    Landmark("Transamerica Pyramid", 37.7952, -122.4028, "skyscraper", "Financial District, San Francisco", "a futurist pyramid-shaped skyscraper"),
    Landmark("Willis Tower", 41.8789, -87.6359, "skyscraper", "Chicago Loop, Illinois", "a black 110-storey skyscraper of bundled tubes with a glass skydeck"),
    Landmark("Cloud Gate", 41.8827, -87.6233, "sculpture", "Millennium Park, Chicago", "a bean-shaped sculpture of mirror-polished stainless steel"),
    Landmark("Wrigley Field", 41.9484, -87.6553, "stadium", "Chicago, Illinois", "a baseball park with ivy-covered outfield walls and a hand-turned scoreboard"),
    Landmark("Navy Pier", 41.8917, -87.6086, "pier", "Chicago lakefront, Illinois", "a pier on Lake Michigan with a Ferris wheel and gardens"),
    Landmark("Hollywood Sign", 34.1341, -118.3215, "sign", "Hollywood Hills, Los Angeles", "giant white capital letters on Mount Lee"),
    Landmark("Griffith Observatory", 34.1184, -118.3004, "observatory", "Griffith Park, Los Angeles", "an Art Deco observatory with three copper domes above the city"),
    Landmark("Santa Monica Pier", 34.0086, -118.4986, "pier", "Santa Monica, California", "a pier with an amusement park and a solar-powered Ferris wheel"),
    Landmark("Space Needle", 47.6205, -122.3493, "tower", "Seattle Center, Washington", "an observation tower with a flying-saucer-shaped top"),
    Landmark("Pike Place Market", 47.6097, -122.3422, "market", "Seattle, Washington", "a public market on the waterfront famous for its neon clock and fish throwing"),
    Landmark("Gateway Arch", 38.6247, -90.1848, "monument", "St. Louis, Missouri", "a stainless-steel catenary arch on the Mississippi riverfront"),
    Landmark("Mount Rushmore", 43.8791, -103.4591, "memorial", "Black Hills, South Dakota", "four presidents' faces carved into a granite mountain"),
    Landmark("Mather Point", 36.0617, -112.1077, "viewpoint", "Grand Canyon, Arizona", "a rim overlook above layered red canyon walls"),
    Landmark("Hoover Dam", 36.0161, -114.7377, "dam", "Black Canyon, Nevada-Arizona", "a concrete arch-gravity dam holding back Lake Mead"),
    Landmark("Bellagio Fountains", 36.1126, -115.1767, "fountain", "Las Vegas Strip, Nevada", "a lake with choreographed water fountains in front of a casino"),
    Landmark("The Alamo", 29.4260, -98.4861, "mission", "San Antonio, Texas", "a limestone Spanish mission church, site of an 1836 battle"),
    Landmark("Space Center Houston", 29.5519, -95.0981, "museum", "Houston, Texas", "the visitor centre of the NASA Johnson Space Center with rockets on display"),
    Landmark("Independence Hall", 39.9489, -75.1500, "government building", "Philadelphia, Pennsylvania", "a red-brick Georgian building where the Declaration of Independence was signed"),
    Landmark("Fenway Park", 42.3467, -71.0972, "stadium", "Boston, Massachusetts", "a baseball park with a tall green left-field wall"),
    Landmark("Old North Church", 42.3663, -71.0544, "church", "North End, Boston", "a brick church with a white steeple where two lanterns were hung"),
    Landmark("American Falls", 43.0828, -79.0742, "waterfall", "Niagara Falls, New York", "a broad waterfall over a rock talus at the Niagara River"),
    Landmark("USS Arizona Memorial", 21.3649, -157.9500, "memorial", "Pearl Harbor, Hawaii", "a white memorial straddling a sunken battleship"),
    Landmark("Diamond Head", 21.2620, -157.8060, "volcano", "Honolulu, Hawaii", "a volcanic tuff cone with a crater trail above Waikiki"),
    Landmark("Kennedy Space Center", 28.5729, -80.6490, "spaceport", "Merritt Island, Florida", "a launch site with a huge vehicle assembly building"),
    Landmark("Cinderella Castle", 28.4195, -81.5812, "castle", "Magic Kingdom, Florida", "a fairy-tale castle with blue spires at a theme park"),
    Landmark("Jackson Square", 29.9574, -90.0629, "square", "French Quarter, New Orleans", "a historic park before a white cathedral with three spires"),
    Landmark("Graceland", 35.0477, -90.0260, "mansion", "Memphis, Tennessee", "a colonial-revival mansion that was the home of Elvis Presley"),
    Landmark("The Parthenon", 36.1497, -86.8133, "museum", "Centennial Park, Nashville", "a full-scale replica of the Athenian temple"),
    Landmark("Red Rocks Amphitheatre", 39.6654, -105.2057, "amphitheatre", "Morrison, Colorado", "an open-air concert venue between giant red sandstone monoliths"),
    Landmark("Old Faithful", 44.4605, -110.8281, "geyser", "Yellowstone National Park, Wyoming", "a cone geyser that erupts at predictable intervals"),
    Landmark("Devils Tower", 44.5902, -104.7146, "butte", "Black Hills, Wyoming", "a monolithic igneous butte with columnar joints"),
    Landmark("Multnomah Falls", 45.5762, -122.1158, "waterfall", "Columbia River Gorge, Oregon", "a two-tiered waterfall with a stone footbridge"),
    Landmark("Delicate Arch", 38.7436, -109.4993, "rock arch", "Arches National Park, Utah", "a freestanding red sandstone natural arch"),
    Landmark("Mackinac Bridge", 45.8174, -84.7278, "bridge", "Straits of Mackinac, Michigan", "a long suspension bridge between Michigan's two peninsulas"),
)
"""Real US landmarks (WGS84 degrees). Categories and blurbs are written for the demo texts."""
