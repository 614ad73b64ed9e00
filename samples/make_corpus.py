#!/usr/bin/env python3
"""Write the small sample web corpus used by the curate quickstart.

All text below was written for this project. Documents are assembled from
hand-written sentence pools with a seeded RNG, so the output is deterministic:
running the script twice produces byte-identical files.

    python samples/make_corpus.py

Output (next to this script):
    corpus/web-0.jsonl, corpus/web-1.jsonl, corpus/web-2.jsonl.gz

Stdlib only.
"""
import gzip
import hashlib
import json
import random
import re
import unicodedata
from pathlib import Path

SEED = 1234
OUT_DIR = Path(__file__).resolve().parent / "corpus"
CRAWLS = ["crawl-2023-50", "crawl-2024-10", "crawl-2024-26"]

# How many documents of each kind to generate.
COUNTS = {
    "clean": 146,        # single-topic articles, how-tos, news
    "clean_digest": 12,  # longer multi-section "weekend reading" articles
    "boilerplate": 35,
    "foreign": 35,
    "spam": 25,
    "short": 18,
    "code_lorem_js": 12,
    "long": 3,
    "exact_dup": 28,
    "near_dup": 28,
}
FOREIGN_COUNTS = {"fr": 6, "de": 6, "es": 6, "it": 4, "pt": 4, "nl": 4, "ru": 3, "zh": 1, "ja": 1}
MISLABELLED_FOREIGN = 2  # foreign pages whose declared lang_hint is (wrongly) "en"

NAMES = ["Ana Ribeiro", "Tom Hallett", "Priya Nair", "Jonas Weber", "Grace Okafor", "Lena Sato",
         "Marcus Bell", "Sofia Marin", "David Kerr", "Hannah Price", "Omar Haddad", "Elin Berg",
         "Felix Moreau", "Ruth Adeyemi", "Kenji Mori", "Clara Novak"]
CITIES = ["Leeds", "Lyon", "Porto", "Utrecht", "Krakow", "Bristol", "Ghent", "Bologna", "Valencia",
          "Graz", "Aarhus", "Cork", "Dundee", "Bergen", "Toulouse", "Halifax"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]

# --------------------------------------------------------------------------
# English topic pools: (key, label, site name, titles, one sentence per line).
# Sentences may use the slots {name} {city} {weekday} {n} {year}.
# --------------------------------------------------------------------------
TOPICS_RAW = [
    ("astronomy", "the night sky", "Skywatch Notes", ["What You Can See in the Night Sky This Month", "A Beginner's Guide to Stargazing",
        "Why the Moon Changes Shape", "Choosing Your First Telescope", "Notes from a Cold Night Outside"], """
The easiest way to start stargazing is to find a dark spot away from street lights and give your eyes at least twenty minutes to adjust.
A pair of ordinary binoculars will show you more craters on the Moon than most people expect, and they are far easier to carry than a telescope.
The Moon does not produce its own light; what we see is sunlight reflected from its dusty, grey surface.
As the Moon travels around the Earth, the portion of its sunlit half that faces us grows and shrinks, which is why we see phases.
Planets tend to shine with a steady light, while stars near the horizon twinkle because their light passes through more turbulent air.
Jupiter is usually the brightest point in the evening sky after Venus, and even a small telescope reveals its four largest moons lined up beside it.
Many beginners buy a telescope with a high magnification printed on the box, only to discover that a wide, stable view matters much more.
A red flashlight lets you read a star chart without ruining the night vision you spent so long building up.
Light pollution has made the Milky Way invisible to a large share of people who live in cities, including most of the residents of {city}.
When {name} set up a folding chair in the garden last {weekday}, the first surprise was how many more stars appeared after half an hour.
Meteor showers happen when the Earth passes through a trail of dust left behind by a comet, and the best viewing is usually after midnight.
You do not need to know the names of constellations to enjoy the sky, but learning three or four of them makes every other star easier to find.
Astronomers measure the distances to nearby stars by watching how their positions shift slightly as the Earth moves around the Sun.
Saturn's rings are made mostly of ice, ranging from tiny grains to chunks as large as a house.
Cold nights often give the clearest views, because dry air holds less haze, so dress in more layers than you think you will need.
Local astronomy clubs frequently hold free viewing evenings where members let visitors look through their own instruments.
A planisphere is a simple rotating card that shows which stars are above the horizon at any hour of the year.
The International Space Station can be seen with the naked eye as a bright, fast-moving dot that crosses the sky in a few minutes and never blinks.
Keeping a simple logbook of what you observed, when, and under what conditions is the habit that most quickly turns casual looking into real observing.
Photographs from large observatories are often long exposures, so do not be disappointed if galaxies look like faint grey smudges through your eyepiece.
Around {n} clear nights a month is typical for many regions, which is why experienced observers check the forecast before carrying equipment outside.
Solar eclipses are spectacular, but you should never look at the Sun without certified filters, not even for a moment.
"""),
    ("bread", "home baking", "Kitchen Notes", ["How to Bake Your First Loaf of Bread", "Why Did My Bread Not Rise?", "Simple Weeknight Bread Without a Mixer",
        "A Slow Approach to Sourdough", "Five Habits of Confident Home Bakers"], """
Good bread needs only four ingredients: flour, water, salt and yeast, but the way you handle them makes all the difference.
Weighing your flour instead of measuring it by the cup gives far more consistent results from one bake to the next.
If the water is too hot it can kill the yeast, so aim for something that feels barely warm on the inside of your wrist.
Kneading develops the gluten network that traps gas, and you can tell it is ready when a small piece stretches thin enough to let light through.
A long, cool rise in the refrigerator gives the dough time to develop a deeper, slightly tangy flavour.
Many recipes say to let the dough double in size, but the time that takes depends heavily on the temperature of your kitchen.
Salt does more than add taste; it also tightens the dough and slows the yeast so that the rise stays under control.
{name} learned to bake during a long winter in {city}, starting with a loaf so dense that it was later used as a doorstop.
Shaping the loaf with a tight outer skin helps it hold its form and rise upwards in the oven rather than spreading sideways.
A heavy pot with a lid traps steam during the first part of baking, which keeps the crust soft long enough for the bread to expand.
Cutting a shallow slash across the top with a sharp blade controls where the loaf opens as it grows in the heat.
The bread is done when the crust is deep brown and the bottom sounds hollow when you tap it with a knuckle.
Resist the urge to slice into a loaf straight from the oven, because the inside is still setting as it cools.
A sourdough starter is simply flour and water that has been colonised by wild yeasts and friendly bacteria.
Feeding a starter once a day at room temperature keeps it lively, while a jar kept in the fridge only needs attention about once a week.
Whole wheat flour absorbs more water than white flour, so a dough made with it will feel stiffer unless you add a little extra liquid.
If your loaves keep coming out flat, the most common culprits are old yeast, too much water, or a dough that rose for far too long.
Stale bread is not a waste: it makes excellent breadcrumbs, croutons, or a savoury pudding baked with eggs and cheese.
A loaf wrapped in a cotton towel stays pleasant for two or three days, while plastic bags keep it soft but make the crust chewy.
Baking in a group is a good way to learn, and a neighbourhood class on a {weekday} evening often costs less than a bag of good flour and a new pan.
Adding seeds, olives or dried fruit is best done near the end of kneading so that the pieces do not tear the dough.
Keep a notebook of flour brands, water amounts and rising times, because small changes are much easier to judge when they are written down.
"""),
    ("history", "old trade routes", "Past and Present", ["How Ancient Roads Shaped Modern Europe", "Trade Fairs of the Middle Ages", "Why Old Towns Grew Where They Did",
        "Salt, Silver and the Rise of Market Towns", "Reading a Landscape Like a Historian"], """
Many of the roads we drive on today follow routes that were first laid out by armies and merchants more than a thousand years ago.
Roman engineers built their main roads with several layers of stone and gravel, and some stretches have survived because they drained so well.
In the Middle Ages a river crossing was valuable property, and towns often grew up around a bridge where travellers were forced to pay a toll.
Seasonal trade fairs brought together merchants from distant regions, who exchanged cloth, spices, furs and news alongside their goods.
Salt was so important for preserving food that the routes used to carry it became major arteries of trade in their own right.
Market charters granted by rulers gave a town the right to hold a weekly market, and that right was fiercely defended against rival towns.
Historians often reconstruct old trade networks by studying coin hoards, because coins minted in one place and buried in another show how money moved.
Monasteries were not only religious centres; they kept records, managed large estates, and sometimes ran breweries and mills.
The width of a medieval street was often set by the need for two carts to pass each other, which explains why old town centres feel so narrow today.
Guilds controlled the quality of goods and the training of apprentices, but they also limited competition in ways that later reformers criticised.
When the archive in {city} was catalogued in {year}, researchers found toll records that listed wool, herring, and barrels of wine passing through every week.
Place names are a quiet source of evidence, since a name that means ford, market or salt spring often points to the reason a settlement existed.
A sudden decline in trade could empty a prosperous town within a generation, leaving behind large churches that seem too grand for the village around them.
Maps made before the age of surveying were often drawn to show routes and travel times rather than accurate distances.
Pilgrims travelled in large numbers along well-known roads, and inns, hospitals and chapels grew up to serve them.
Letters of credit allowed merchants to avoid carrying heavy chests of coins across dangerous country, an early step towards modern banking.
The arrival of railways in the nineteenth century redirected trade so sharply that some old market towns never recovered their importance.
Walking an old route with a historical map in hand is one of the best ways to understand why people chose to travel where they did.
Local museums frequently hold collections of weights and measures, which differed from one town to the next and caused endless disputes.
Written sources mostly describe the lives of the wealthy, so archaeologists rely on rubbish pits and building foundations to learn about everyone else.
{name}, a volunteer at the county record office, spent {n} years transcribing market court rolls that no one had read for centuries.
Understanding how goods moved in the past helps explain patterns of wealth and poverty that still shape regions today.
"""),
    ("programming", "debugging code", "Dev Journal", ["A Practical Guide to Debugging Python Code", "Writing Tests That Actually Help", "How to Read a Stack Trace",
        "Lessons from a Week of Chasing One Bug", "Keeping Small Scripts Maintainable"], """
The most useful debugging skill is the ability to reproduce a problem reliably, because a bug you cannot trigger is a bug you cannot fix.
A Python traceback lists the outermost call first and the line that actually failed last, so start reading from the bottom.
Print statements are not shameful; a few well-placed lines that show the value of a variable are often faster than starting a debugger.
The built-in debugger lets you pause a program, step through it line by line, and inspect every variable in the current scope.
Writing a failing test before fixing a bug guarantees that you understand the problem and that it will not quietly return later.
Small functions with clear inputs and outputs are much easier to test than long procedures that read and modify global state.
When a program behaves differently on another machine, check the versions of the interpreter and libraries before anything else.
Off-by-one errors are common when slicing lists, because the end index of a slice is not included in the result.
Logging with levels such as debug, info and warning lets you keep diagnostic messages in the code without flooding normal output.
{name} once spent {n} days tracking a failure that turned out to be a file saved with the wrong text encoding.
Explaining the problem out loud to a colleague, or even to a rubber duck on the desk, often reveals the assumption you did not know you were making.
Version control makes experiments safe, since you can always return to the last commit that was known to work.
Reading error messages carefully is underrated; they frequently name the exact file, line and value that caused the trouble.
A virtual environment keeps the dependencies of one project from interfering with those of another.
Type hints do not change how the code runs, but they help editors and checking tools catch mistakes before the program is executed.
When performance is the problem, measure first with a profiler instead of guessing which part of the code is slow.
Mutable default arguments are a classic trap, because the same list or dictionary is shared between every call to the function.
Code review catches a surprising number of bugs, but only when reviewers have time to read the change rather than skim it.
Automated checks that run on every commit make it harder for a broken change to slip into the main branch.
Bisecting the history, by testing commits halfway between a good one and a bad one, can find the change that introduced a bug in a few steps.
Clear names for variables and functions are a form of documentation that stays accurate as long as the code itself is maintained.
When you finally fix a difficult bug, write a short note about the cause, because the same pattern is likely to appear again.
"""),
    ("gardening", "the vegetable garden", "Backyard Harvest", ["Growing Tomatoes in a Small Garden", "Compost Made Simple", "What to Plant in Early Spring",
        "Watering Wisely During a Dry Summer", "Raised Beds for Beginners"], """
Tomatoes need at least six hours of direct sunlight a day, so choose the brightest corner of the garden before anything else.
Compost is simply decomposed plant material, and a well-managed heap turns kitchen scraps and leaves into dark, crumbly soil within a few months.
A good compost heap needs a balance of green material, such as grass clippings, and brown material, such as dry leaves or shredded cardboard.
Watering deeply once or twice a week encourages roots to grow downwards, while a light daily sprinkle keeps them near the surface.
Raised beds warm up earlier in spring and drain quickly, which makes them a good choice for heavy clay soils.
Mulching with straw or wood chips keeps moisture in the ground and smothers many weeds before they can establish themselves.
Peas, radishes and spinach tolerate cool weather and can be sown as soon as the soil is workable in early spring.
Rotating crops from one bed to another each year reduces the build-up of pests and diseases that target a particular plant family.
{name} grows beans up an old ladder in a yard in {city}, proving that a vegetable patch does not need much space.
Pinching out the side shoots of cordon tomatoes directs the plant's energy into fruit rather than leaves.
Slugs are most active on damp evenings, so a torchlit patrol after rain can protect young seedlings better than any product.
Companion planting, such as growing marigolds near vegetables, may help attract useful insects, although results vary from garden to garden.
Seeds stored in a cool, dry and dark place usually stay viable for several years, though germination rates slowly fall over time.
Hardening off young plants by leaving them outside for a few hours a day prevents the shock of moving straight from a windowsill to the open ground.
Rainwater collected in a barrel is free, soft, and often preferred by plants over treated tap water.
A soil test costs little and tells you whether your ground needs lime, extra nutrients, or simply more organic matter.
Herbs like thyme, rosemary and sage prefer poor, well-drained soil and often do best when they are left mostly alone.
Harvesting courgettes while they are small keeps the plant producing, whereas a forgotten marrow slows it down considerably.
Earthworms are a sign of healthy soil, and digging as little as possible helps protect the tunnels they create.
Keeping a simple diary of sowing dates and harvests shows which varieties suit your conditions and which are not worth growing again.
Frost can arrive later than expected, so keep an old sheet or fleece handy to cover tender plants on clear, still nights.
Sharing surplus seedlings with neighbours is one of the quiet pleasures of gardening and often leads to a useful swap later in the season.
"""),
    ("travel", "slow travel", "Slow Routes", ["Why I Prefer Travelling by Train", "Packing Light for a Two-Week Trip", "A Weekend in {city} on a Budget",
        "How to Plan a Rail Journey Across Several Countries", "Small Towns Worth a Detour"], """
Travelling by train lets you watch the landscape change gradually, which makes a journey feel like part of the holiday rather than an obstacle.
Booking long-distance tickets a few weeks in advance is usually much cheaper than buying them at the station on the day.
A single bag that fits in an overhead rack makes changing trains quick and keeps you from worrying about luggage on the platform.
Night trains save the cost of a hotel and arrive in the morning, although sleeping well depends on your tolerance for gentle rocking.
Regional trains are slower but stop in small towns that guidebooks often ignore, which can be the highlight of a trip.
{name} spent a weekend in {city} with only a day pass and a paper map, and found the best meal of the trip in a station café.
Check whether a rail pass actually saves money, because for a short itinerary separate tickets are sometimes cheaper.
Carry a small bag of snacks and a refillable water bottle, since dining cars can be expensive or closed on some routes.
Connections with less than ten minutes to spare are risky at large stations where platforms can be far apart.
Many cities offer free walking tours led by local guides who work for tips, a pleasant way to get your bearings on the first day.
Learning a handful of polite phrases in the local language earns goodwill even when the conversation quickly switches to English.
Museums often have one evening a week with reduced prices or longer opening hours, and those quieter hours are worth planning around.
Staying near the main station is convenient, but a neighbourhood a few stops away is often cheaper and more lively in the evening.
Paper tickets are rare now, yet it is wise to keep a screenshot or printout in case your phone battery runs out.
Travelling outside the school holidays means emptier trains, lower prices and a more relaxed atmosphere in popular places.
A journey of {n} hours may sound long, but with a book, a window seat and a view of the mountains it passes surprisingly quickly.
Local markets are a good place to try regional food cheaply, and the stall holders are usually happy to explain what you are eating.
Travel insurance is easy to forget, but it matters most for exactly the unlikely events you would rather not think about.
Keeping a short diary of each day helps you remember small moments that photographs do not capture.
Strikes and engineering works do happen, so check the operator's website the evening before any important connection.
Walking from the station to your accommodation, rather than taking a taxi, is often the quickest way to understand the layout of a town.
Returning to a favourite place in a different season can feel like visiting somewhere new.
"""),
    ("finance", "household money", "Plain Money", ["How to Build a Household Budget That Lasts", "Saving for an Emergency Fund", "Understanding Interest Without the Jargon",
        "Ten Minutes a Week to Better Finances", "Should You Pay Off Debt or Save First?"], """
A budget is simply a plan for your money, written down before the month begins rather than reconstructed after it ends.
Start by listing your fixed costs, such as rent and insurance, then estimate the variable ones like food and transport.
Many advisers suggest keeping three to six months of essential expenses in an emergency fund that is easy to reach.
Compound interest means you earn interest on previous interest, which is powerful for savings and painful for debt.
Paying off a credit card with a high interest rate is often the best guaranteed return available to an ordinary household.
Automatic transfers to a savings account on payday remove the temptation to spend money before it is put aside.
Small regular costs, such as subscriptions you no longer use, can add up to a surprising sum over a year.
{name} tracked every purchase for {n} weeks and discovered that takeaway coffee cost more each month than the electricity bill.
Comparing prices per kilogram or per litre, rather than per package, shows which offers in the shop are actually cheaper.
Inflation slowly reduces what money can buy, so cash kept under the mattress loses value even though the number stays the same.
A fee of one or two percent a year sounds small, but over decades it can consume a large share of an investment's growth.
Before signing a loan agreement, check the total amount you will repay, not just the monthly instalment.
Setting specific goals, such as a holiday or a new boiler, makes saving feel purposeful rather than like pure sacrifice.
Reviewing your budget once a month lets you adjust it to real life instead of abandoning it after the first unexpected bill.
Spreading investments across many companies and sectors reduces the damage that any single failure can do.
A rise in income is a good moment to increase savings, because you will not miss money that you never got used to spending.
Talking openly about money with a partner avoids many arguments, even if the first conversation feels uncomfortable.
Keeping receipts and statements organised in one folder makes tax season and insurance claims far less stressful.
Promises of guaranteed high returns with no risk are a warning sign, not an opportunity.
Buying second-hand furniture, tools and books can save a great deal without any real loss in quality.
Some people find it easier to use separate accounts for bills, spending and savings so that each has a clear purpose.
Financial habits are built slowly, and a modest plan followed consistently beats an ambitious one that lasts only a fortnight.
"""),
    ("health", "sleep and health", "Wellbeing Weekly", ["Why Sleep Matters More Than You Think", "Building a Better Bedtime Routine", "Walking as Everyday Exercise",
        "Eating Well Without Strict Rules", "Small Changes for a Healthier Week"], """
Most adults need between seven and nine hours of sleep a night, yet many regularly get far less during the working week.
Going to bed and getting up at the same time every day, even at weekends, helps keep the body clock steady.
Bright screens late in the evening can make it harder to fall asleep, so dimming them an hour before bed is a sensible habit.
A cool, dark and quiet bedroom is better for sleep than a warm room full of blinking lights.
Caffeine lingers in the body for hours, and an afternoon coffee may still be affecting you when you try to sleep.
A brisk walk of thirty minutes most days provides real benefits for the heart, the mood and the joints.
Stretching for a few minutes after sitting for a long time relieves stiffness and reminds you to change posture.
Drinking water regularly through the day matters more than forcing down large amounts at once.
Meals built around vegetables, whole grains and some protein keep you full longer than snacks high in sugar.
{name} started taking the stairs at work in {city} and, after {n} weeks, found that the climb no longer caused any breathlessness.
Short naps of around twenty minutes can restore alertness, while long naps late in the day often disturb night-time sleep.
Stress and sleep affect each other, so writing down tomorrow's worries before bed can make it easier to switch off.
Regular checks with a doctor can catch problems such as high blood pressure before they cause symptoms.
Social contact is good for health too, and a weekly walk with a friend combines two useful habits in one.
Alcohol may help people fall asleep, but it tends to make sleep lighter and more broken in the second half of the night.
Eating slowly gives the body time to register that it is full, which naturally reduces overeating.
Strength exercises twice a week help maintain muscle and balance, which become increasingly important with age.
Sunlight in the morning helps set the body clock, so a short walk outside after breakfast can improve sleep that night.
If snoring is loud and accompanied by pauses in breathing, it is worth talking to a doctor rather than simply buying earplugs.
Changing one habit at a time is more realistic than trying to overhaul your whole life on a Monday morning.
Rest days are part of any exercise plan, since muscles strengthen while recovering rather than during the workout itself.
Health advice changes as research improves, so be cautious of any single study that promises dramatic results.
"""),
    ("weather", "the weather", "Weatherwise", ["How Weather Forecasts Are Made", "Understanding Clouds", "Why Coastal Towns Have Milder Winters",
        "What a Rain Gauge Can Teach You", "The Difference Between Weather and Climate"], """
Weather describes conditions over hours and days, while climate refers to the average pattern over many years.
Modern forecasts rely on computer models that divide the atmosphere into a grid and calculate how each cell changes over time.
Observations from weather balloons, satellites, ships and ground stations are fed into the models several times a day.
Forecasts for the next two or three days are usually reliable, but uncertainty grows quickly beyond a week.
Clouds form when rising air cools and the water vapour it carries condenses into tiny droplets or ice crystals.
Tall, towering clouds with flat tops often signal thunderstorms, while thin, wispy clouds high in the sky usually mean fair weather for now.
The sea warms and cools more slowly than land, which is why coastal towns tend to have milder winters and cooler summers.
A simple rain gauge in the garden shows how much rainfall varies even between neighbouring streets.
{name} has recorded the temperature outside a kitchen window in {city} every morning since {year}.
Fog forms on clear, calm nights when the ground loses heat quickly and cools the air just above it.
Wind is caused by differences in air pressure, and the larger the difference over a short distance, the stronger the wind.
A falling barometer often warns of unsettled weather, a trick sailors relied on long before satellite images existed.
Urban areas are often several degrees warmer than the surrounding countryside because concrete and asphalt store heat.
Snow needs cold air near the ground, and a difference of a single degree can decide whether a storm brings snow or rain.
Long records kept by volunteers over many decades are valuable to scientists studying how local climates are changing.
The chance of rain in a forecast describes how likely it is that rain will fall at a given place, not how heavy it will be.
Hail grows as ice pellets are carried up and down inside a storm cloud, gaining a new layer with every trip.
Mountains force air upwards, so the side facing the prevailing wind is usually much wetter than the sheltered side.
Heatwaves are dangerous for older people and small children, who should be checked on regularly during hot spells.
Rainbows appear when sunlight is bent and reflected inside raindrops, and you will always find one with the Sun behind you.
Looking up at the sky for a few minutes each day is a surprisingly good way to learn how the weather in your area behaves.
Thunder is the sound of air expanding rapidly after being heated by lightning, and counting the seconds between flash and rumble tells you roughly how far away the storm is.
"""),
    ("music", "learning music", "Practice Room", ["Learning an Instrument as an Adult", "How to Practise Without Getting Bored", "Choosing Your First Guitar",
        "Why Scales Are Worth the Effort", "Playing Music With Other People"], """
It is never too late to learn an instrument, and adults often progress quickly because they know how to practise deliberately.
Twenty focused minutes a day are worth more than a single long session once a week.
Starting each practice session with a slow warm-up protects your hands and settles your attention.
Scales are dull at first, but they train your fingers to find notes without thinking, which frees your mind for the music itself.
Recording yourself on a phone is an honest teacher, revealing uneven rhythm and rushed passages that you do not notice while playing.
A metronome helps you keep a steady pulse, and gradually raising the tempo is the surest way to master a difficult passage.
When choosing a first guitar, comfort matters more than brand, so try several and pick the one that feels easiest to hold.
{name} took up the cello at the age of {n}0 and now plays in a community orchestra in {city}.
Learning to read music opens up a vast library of pieces, although many fine musicians learned entirely by ear.
Playing with other people teaches listening, timing and humility in a way that solo practice never can.
Break a hard piece into small sections and master each one before joining them together.
Sore fingertips are normal for new string players, and the skin toughens within a few weeks of regular practice.
A good teacher does more than correct mistakes; they help you choose music that keeps you motivated.
Listening widely, across styles and periods, gives you ideas about phrasing that no exercise book can provide.
Tuning before every session trains your ear and ensures that you are practising with the right pitches.
Performance nerves are common even among professionals, and playing for friends is a gentle way to get used to an audience.
Keeping a practice diary shows steady progress that is easy to overlook from one day to the next.
Posture affects tone, breathing and comfort, so sit or stand in a relaxed, balanced position.
Simple songs played well bring more satisfaction than difficult pieces played badly.
Take short breaks during long sessions, because tired muscles learn bad habits quickly.
Improvising, even with only three or four notes, encourages you to think of music as something you make rather than something you copy.
The goal of practice is not perfection but enjoyment, and the joy of playing is the best reason to keep going.
"""),
    ("woodworking", "the home workshop", "Workshop Bench", ["Essential Tools for a Small Workshop", "Building a Simple Bookshelf", "How to Fix a Squeaky Floorboard",
        "Finishing Wood for a Lasting Surface", "Safety Habits Every Home Builder Needs"], """
A small workshop does not need expensive machines; a good saw, a few chisels, a drill and a reliable square go a long way.
Measure twice and cut once remains the best advice in woodworking, because wood cannot be stretched after it is cut too short.
Always cut on the waste side of the line, so that the width of the saw blade does not make the piece too small.
Sharp tools are safer than blunt ones, since they need less force and are less likely to slip.
A simple bookshelf made from pine boards and screws can be finished in an afternoon and will last for many years.
Pilot holes prevent screws from splitting the wood, especially near the ends of a board.
Wood moves as it takes on and loses moisture, so furniture must be designed to allow for small seasonal changes.
Sanding through the grades from coarse to fine produces a smooth surface that takes a finish evenly.
Oil finishes are easy to apply and repair, while varnish gives tougher protection for surfaces that see heavy use.
{name} built a workbench from reclaimed timber in a garage in {city} and has used it almost every weekend since {year}.
A squeaky floorboard is often fixed by driving a screw through the board into the joist beneath it.
Clamps are the tools that beginners never seem to have enough of, and a few extra ones make glue-ups far less stressful.
Safety glasses and hearing protection should be worn every time, not only when a job looks dangerous.
Dust from sanding is harmful to breathe, so use a mask and clear up regularly with a vacuum rather than a brush.
Hand tools are quiet, which makes them ideal for those who share walls with neighbours or work late in the evening.
Glue joints are stronger than the surrounding wood when the surfaces fit closely and are clamped properly.
Keeping offcuts of good timber pays off, as small pieces are perfect for practice joints, wedges and little boxes.
Before drilling into a wall, check for hidden pipes and cables with a detector.
A tidy workshop is a safer workshop, because tripping over cables and reaching past clutter both cause accidents.
Learning one joint properly, such as a simple mortise and tenon, teaches more than rushing through a dozen projects.
Old furniture can often be rescued with new glue, a little filler and a fresh finish instead of being thrown away.
Writing the date and the names of the makers on the underside of a finished piece is a pleasant tradition that future owners enjoy discovering.
"""),
    ("pets", "living with pets", "Happy Paws", ["Training a New Puppy: The First Month", "Why Dogs Pull on the Lead", "Keeping an Older Cat Comfortable",
        "Choosing a Pet That Fits Your Life", "Positive Training in Everyday Life"], """
Puppies learn fastest through short, frequent sessions that end while they are still enjoying themselves.
Rewarding the behaviour you want, with food or play, works better and builds more trust than punishing mistakes.
Dogs pull on the lead because pulling usually works, so stop walking whenever the lead goes tight and move again once it slackens.
Socialising a puppy means giving it calm, positive encounters with people, sounds, surfaces and other animals.
A tired dog is usually a well-behaved dog, and mental games can tire a dog as effectively as a long run.
Older cats often appreciate a low-sided litter tray and a warm bed away from draughts.
Regular visits to the vet help catch dental problems, which are common and often painful in both cats and dogs.
{name} adopted a nervous greyhound from a shelter near {city}, and it took {n} months before the dog felt confident in the park.
Consistency matters, so everyone in the household should use the same words for the same commands.
Chewing is normal for puppies, and providing suitable toys protects both your furniture and their teeth.
Before choosing a pet, think honestly about how much time, space and money you can give over the next ten to fifteen years.
Cats scratch to keep their claws healthy and mark territory, so a sturdy scratching post is a necessity rather than a luxury.
A dog that is left alone for long hours may become bored and destructive, which is not the same as being naughty.
Teaching a reliable recall can be life-saving, and it should be practised in a quiet place before trying it in the park.
Many human foods, including chocolate, grapes and onions, are dangerous for dogs.
Rabbits are social animals and usually live happier lives in pairs with plenty of space to run.
Body language tells you a great deal, and a yawning or lip-licking dog is often feeling uneasy rather than tired.
Grooming sessions are a good moment to check for lumps, ticks and sore spots.
Microchipping greatly increases the chance that a lost pet will be returned home.
Fresh water should always be available, especially in warm weather and after exercise.
Training classes teach the owner as much as the dog, and they are a good place to meet other people facing the same challenges.
Patience is the most important tool in any training plan, because every animal learns at its own pace.
"""),
    ("cycling", "cycling in town", "Two Wheels Daily", ["Commuting by Bicycle: A Beginner's Guide", "Basic Bike Maintenance You Can Do at Home", "Riding Safely in City Traffic",
        "Choosing the Right Bike for Your Commute", "What Cities Learn When They Build Cycle Lanes"], """
Cycling to work combines exercise with transport, and many riders find that the journey clears their head before the day begins.
Checking tyre pressure once a week is the simplest way to make riding easier and reduce punctures.
A clean, lightly oiled chain runs more quietly and wears out far more slowly than a dirty, dry one.
Lights are essential after dark and useful in grey weather, so keep a spare set in your bag.
Riding a little way out from parked cars protects you from doors that open without warning.
Making eye contact with drivers at junctions is one of the best ways to be sure that you have been seen.
{name} started cycling the {n} kilometres to the office in {city} and now rarely takes the bus, even in winter.
Mudguards may not look sporty, but they keep you and your clothes much cleaner on wet days.
Learning to fix a puncture at the roadside takes a few minutes of practice and saves a long walk home.
A bike that fits properly is more comfortable and efficient, so ask a shop to help you set the saddle height.
Separated cycle lanes encourage people who would never ride in mixed traffic to try cycling.
Cities that invest in safe routes often see an increase in local shopping, as cyclists stop more often than drivers.
Panniers carry shopping and work clothes far more comfortably than a heavy backpack.
Brake pads wear down gradually, so check them regularly rather than waiting for a squeal.
Planning a route along quieter streets can add a few minutes but make the journey much more pleasant.
Waterproof clothing has improved greatly, and a light jacket makes rainy commutes bearable.
Electric bikes flatten hills and lengthen the distance people are willing to ride, which is why their popularity keeps growing.
A strong lock and a habit of securing both the frame and a wheel to a fixed object deter most thieves.
Signalling your intentions clearly with your arm helps everyone around you predict what you will do.
Group rides organised by local clubs are a friendly way to learn new routes and gain confidence.
Children who cycle to school often arrive more alert, and parents sometimes organise escorted rides for younger riders.
The best bike for commuting is the one you will actually ride, whatever it looks like.
"""),
    ("photography", "taking better photos", "Light and Lens", ["Better Photos With the Camera You Already Own", "Understanding Light in Photography", "Composition Tips for Beginners",
        "Photographing People Without Making Them Nervous", "Why You Should Print Your Photographs"], """
The best camera is the one you have with you, and modern phones are capable of excellent pictures in good light.
Light matters more than equipment, and the soft light shortly after sunrise or before sunset flatters almost any subject.
Placing the main subject slightly off centre often makes a picture feel more balanced and interesting.
Getting closer to your subject removes distractions and gives the viewer a clearer idea of what the picture is about.
Look at the edges of the frame before pressing the shutter, because stray objects there pull attention away from the subject.
Shooting from a low or high angle can transform an ordinary scene into something unexpected.
Cloudy days are excellent for portraits, since the clouds spread the light evenly and soften harsh shadows.
{name} photographed the same street corner in {city} every week for a year, capturing the slow change of seasons and shop fronts.
Holding the camera steady, or bracing it against a wall, reduces blur when the light is low.
People relax in front of the camera when you chat to them and take plenty of pictures rather than a single posed shot.
Reflections in puddles and windows offer interesting compositions, especially in towns after rain.
Backing up photographs in two separate places protects years of memories from a single failed drive.
Editing should enhance a picture rather than rescue it, so start by getting the exposure as close as possible in the camera.
Black and white images emphasise shape, texture and contrast by removing the distraction of colour.
Printing a few favourite photographs each year is a good way to enjoy them, since images left on a phone are rarely looked at again.
Always ask permission before photographing people in private situations, and respect a refusal politely.
A simple reflector, even a sheet of white card, can brighten the shadow side of a face.
Walking slowly and looking for small details often produces more original pictures than photographing famous views.
Learning how shutter speed, aperture and sensitivity work together gives you control over movement, focus and brightness.
Critiques from other photographers can be uncomfortable but are one of the fastest ways to improve.
Taking the camera out on {n} short walks a week builds skill faster than one long trip a year.
A photograph does not need to be technically perfect to be moving; emotion and timing matter more.
"""),
    ("news", "local news", "Riverside Gazette", ["News in Brief from {city}", "This Week in {city}", "Council Roundup: {weekday} Meeting",
        "Community Notes from Around {city}", "Local News Digest"], """
The town council in {city} voted on {weekday} evening to extend the opening hours of the central library on weekdays.
Repairs to the old stone bridge on the river road are expected to begin next month and will last around {n} weeks.
Residents have been asked to use the signed diversion through the industrial estate while the bridge is closed to vehicles.
A community garden has opened on the site of a former car park, with raised beds available to rent for a small annual fee.
More than {n}0 volunteers gathered on {weekday} morning to clear litter from the river bank between the mill and the football ground.
Pupils from the secondary school won a regional science prize for a project measuring air quality near busy junctions.
The annual summer fair will return to the market square, with stalls run by local clubs, charities and small businesses.
Police have reminded drivers that the speed limit outside the primary school has been lowered during school hours.
The swimming pool will close for two weeks for maintenance, and regular swimmers are invited to use the leisure centre in the next town.
A petition calling for a new pedestrian crossing on the high street has gathered several hundred signatures.
Local historian {name} will give a free talk on the history of the town's textile mills at the community hall.
The bus company has announced a new evening service connecting the railway station with the housing estates to the north.
Shop owners say that footfall has improved since the market moved back to its traditional location in the town centre.
A new recycling point for small electrical items has been installed in the car park behind the supermarket.
The council said it would publish a full consultation on the future of the old fire station later in the year.
Organisers of the charity fun run raised a record amount for the local hospice, helped by sunny weather and a large turnout.
A family bakery that has traded on the same corner since {year} will celebrate with free samples for customers this weekend.
Residents are invited to comment on plans for new cycle racks outside the health centre and the train station.
The youth football club is looking for volunteer coaches and referees ahead of the new season.
Road resurfacing work on the ring road will take place overnight to reduce disruption to commuters.
The choir that meets in the church hall on {weekday} evenings welcomes new singers and does not require auditions.
Further details about all of these events can be found on notice boards in the library and the town hall.
"""),
]

def lines_of(block):
    return [ln.strip() for ln in block.strip().splitlines() if ln.strip()]

def slugify(s):
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


TOPICS = [dict(key=k, label=lab, site=site, domain=slugify(site) + ".example", titles=t, sents=lines_of(b))
          for k, lab, site, t, b in TOPICS_RAW]

# --------------------------------------------------------------------------
# Other languages: (titles, sentences), one theme per language.
# --------------------------------------------------------------------------
FOREIGN = {
    "fr": (["Le marché du samedi", "Manger local au quotidien", "Une matinée sur la place du marché"], """
Le samedi matin, le marché de la place centrale se remplit dès sept heures.
Les maraîchers arrivent avant l'aube pour installer leurs étals de légumes, de fruits et de fleurs.
On y trouve des fromages de la région, du pain encore tiède et des olives vendues au poids.
Beaucoup d'habitants viennent surtout pour bavarder avec les commerçants qu'ils connaissent depuis des années.
En automne, les champignons et les courges prennent la place des tomates et des fraises.
La cuisine de tous les jours repose souvent sur des produits simples préparés avec soin.
Une soupe de légumes, un morceau de fromage et une salade suffisent pour un repas du soir agréable.
Les prix ont augmenté cette année, mais les producteurs locaux essaient de rester abordables.
Certains clients apportent leurs propres paniers et bocaux pour éviter les emballages en plastique.
Après le marché, les terrasses des cafés sont pleines de gens qui lisent le journal au soleil.
La municipalité envisage de couvrir une partie de la place afin que le marché puisse se tenir même par temps de pluie.
Pour beaucoup de familles, cette promenade du samedi est devenue un petit rituel qu'on ne manquerait pour rien au monde.
"""),
    "de": (["Wandern ohne Auto", "Tipps für die erste Tagestour", "Herbstwanderung im Mittelgebirge"], """
Wer am Wochenende wandern möchte, muss nicht weit fahren, denn viele schöne Wege beginnen direkt am Bahnhof.
Eine gute Karte und feste Schuhe sind wichtiger als teure Ausrüstung.
Im Frühling blühen an den Waldrändern die ersten Buschwindröschen, und die Bäche führen viel Wasser.
Unterwegs laden kleine Gasthäuser zu einer Pause mit Suppe, Brot und einem kühlen Getränk ein.
Man sollte immer genug Wasser mitnehmen, auch wenn der Himmel am Morgen bewölkt ist.
Viele Wanderwege sind gut markiert, trotzdem lohnt es sich, die Route vorher zu planen.
Bei Gewitter ist es ratsam, offene Bergkämme zu meiden und rechtzeitig umzukehren.
Die Regionalbahn fährt am Sonntag stündlich, sodass man auch nach einer langen Tour bequem nach Hause kommt.
Kinder haben mehr Freude am Wandern, wenn es unterwegs etwas zu entdecken gibt, etwa eine Burgruine oder einen Aussichtsturm.
Müll nimmt man selbstverständlich wieder mit, damit die Natur für alle sauber bleibt.
Im Herbst färben sich die Buchenwälder goldgelb, und die Luft riecht nach feuchtem Laub.
Nach einigen Stunden an der frischen Luft schläft man am Abend meistens besonders gut.
"""),
    "es": (["La vida en el barrio", "Una receta que divide familias", "Domingo en la plaza"], """
En mi barrio, la panadería abre a las seis y a esa hora ya hay cola en la puerta.
Las tardes de verano se pasan en la plaza, donde los niños juegan mientras los mayores conversan a la sombra.
La tortilla de patatas es sencilla, pero cada familia defiende su propia receta con pasión.
Hay quien la prefiere con cebolla y quien considera que la cebolla es un error imperdonable.
El mercado municipal se ha renovado y ahora tiene también pequeños bares donde se puede comer al mediodía.
Muchos jóvenes se desplazan en bicicleta desde que el ayuntamiento construyó nuevos carriles protegidos.
Los domingos por la mañana, el parque se llena de corredores, perros y familias con cochecitos.
Las fiestas del barrio duran una semana e incluyen conciertos, concursos de cocina y un desfile.
Aunque los alquileres han subido mucho, los vecinos intentan mantener vivo el comercio de siempre.
La biblioteca organiza talleres gratuitos de lectura para niños y clases de informática para personas mayores.
Al caer la noche, las terrazas se llenan y el ruido de las conversaciones se escucha desde lejos.
Vivir en un barrio así tiene sus inconvenientes, pero pocas cosas se comparan con saludar a todos por su nombre.
"""),
    "it": (["Il rito del caffè", "Passeggiata nel centro storico"], """
In Italia il caffè si beve spesso in piedi al bancone, in pochi minuti e con una breve chiacchierata.
Ogni città ha il suo bar preferito, dove il barista conosce già l'ordinazione dei clienti abituali.
Il cappuccino è considerato una bevanda del mattino, e ordinarlo dopo pranzo fa sorridere più di un cameriere.
Il centro storico conserva strade strette, piccole piazze e palazzi costruiti in secoli diversi.
Molte chiese custodiscono affreschi che raccontano la vita quotidiana delle persone di un tempo.
Passeggiare la sera lungo il corso principale è un'abitudine che unisce giovani e anziani.
Le botteghe artigiane stanno diventando rare, ma alcune resistono grazie ai turisti e ai clienti fedeli.
Il mercato del giovedì offre frutta di stagione, formaggi locali e pesce arrivato la mattina stessa.
D'estate le città si svuotano, perché molte famiglie trascorrono le vacanze al mare o in montagna.
Nonostante il traffico e la burocrazia, molti dicono che non vivrebbero in nessun altro posto.
"""),
    "pt": (["Uma manhã no porto", "A vida junto ao mar"], """
A vila piscatória acorda cedo, quando os barcos regressam com a pesca da noite.
No cais, as gaivotas disputam os restos enquanto os pescadores separam o peixe em caixas.
A sardinha assada é o prato mais popular das festas de verão, servida sobre uma fatia de pão.
Nos últimos anos, muitos jovens deixaram a pesca para trabalhar no turismo ou na cidade.
As casas pintadas de branco e azul refletem a luz forte do sol durante a tarde.
O mercado do peixe funciona todas as manhãs, exceto ao domingo.
Quando o mar está bravo, os barcos ficam no porto e a vila parece mais silenciosa.
Os mais velhos ainda consertam as redes à mão, sentados à porta de casa.
Caminhar pela praia ao fim do dia é um dos prazeres simples de quem vive junto ao oceano.
A escola local ensina às crianças a importância de proteger os recursos do mar.
"""),
    "nl": (["Fietsen in de stad", "Een dag aan de gracht"], """
In Nederland is de fiets voor veel mensen het normale vervoermiddel om naar school of werk te gaan.
De fietspaden zijn breed en goed onderhouden, zelfs in kleine dorpen.
Bij regen trekken fietsers gewoon een regenjas aan en rijden ze verder.
Langs de grachten staan smalle huizen met grote ramen en steile trappen.
Op zaterdag is de markt op het plein een drukke plek vol kaas, bloemen en verse vis.
Veel gezinnen gebruiken een bakfiets om kinderen en boodschappen te vervoeren.
In de winter kan er soms worden geschaatst op bevroren sloten en meren.
Het fietsenrek bij het station is vaak zo vol dat het even zoeken is naar een plekje.
Toeristen worden gewaarschuwd om niet op het fietspad te lopen, want de fietsers rijden snel.
Een rondje door de polder op een zonnige middag laat zien hoe vlak en groen het land is.
"""),
    "ru": (["Зимние вечера", "Жизнь в маленьком городе"], """
Зимой в нашем городе рано темнеет, и многие проводят вечера дома за книгой.
Библиотека на главной улице работает до восьми часов и всегда полна студентов.
По выходным семьи катаются на лыжах в парке или гуляют вдоль замёрзшей реки.
Горячий чай с вареньем помогает согреться после долгой прогулки по морозу.
В школах проходят конкурсы чтецов, и дети учат наизусть длинные стихотворения.
Снег убирают рано утром, но к обеду тротуары снова становятся белыми.
Многие жители выращивают на подоконниках зелень, чтобы зимой были свежие травы.
Весной город оживает, и люди с радостью выходят на улицы после долгих холодов.
"""),
    "zh": (["城市里的小菜园"], """
最近几年，越来越多的城市居民开始在阳台上种菜。
西红柿、辣椒和小葱都比较容易种，只需要充足的阳光和定期浇水。
许多人说，亲手种出来的蔬菜味道特别好。
社区还组织了交流活动，让大家分享种子和经验。
对孩子们来说，观察植物一天天长大也是一堂很好的自然课。
虽然阳台面积不大，但只要用心打理，一个季节也能收获不少。
"""),
    "ja": (["朝の散歩のすすめ"], """
朝早く起きて近所を散歩すると、一日を気持ちよく始めることができます。
季節によって空気のにおいや鳥の声が変わるのも楽しみの一つです。
特別な道具は必要なく、歩きやすい靴があれば十分です。
毎日同じ道を歩いていると、小さな変化に気づくようになります。
散歩の後に温かいお茶を飲むと、体も心も落ち着きます。
無理をせず、自分のペースで続けることが大切です。
"""),
}
FOREIGN_SITES = {"fr": "petit-journal.example", "de": "unterwegs-blog.example", "es": "diario-del-barrio.example",
                 "it": "cronache-locali.example", "pt": "jornal-da-costa.example", "nl": "stadsnieuws.example",
                 "ru": "gorodskie-zametki.example", "zh": "shenghuo-riji.example", "ja": "kurashi-note.example"}

# --------------------------------------------------------------------------
# Web page boilerplate.
# --------------------------------------------------------------------------
NAV_LINES = ["Home | About | Contact", "Home | Blog | Shop | About Us | Contact", "Skip to main content",
             "Menu  Search  Log in  Register", "Home > Articles > {label}", "HOME  NEWS  GUIDES  FORUM  CONTACT"]
COOKIE_LINES = [
    "This website uses cookies to ensure you get the best experience on our website. Learn more | Got it!",
    "We use cookies and similar technologies to personalise content and analyse traffic. By clicking Accept, "
    "you consent to our use of cookies. Accept | Reject | Settings",
    "This site uses cookies. By continuing to browse the site you are agreeing to our use of cookies.",
]
SHARE_LINES = ["Share on Facebook | Share on Twitter | Share on LinkedIn | Email",
               "Share this: Facebook Twitter Pinterest WhatsApp", "Like this article? Share it with your friends!"]
SUBSCRIBE_LINES = ["Click here to subscribe to our newsletter!", "Subscribe now and never miss a post.",
                   "Sign up for our weekly newsletter. No spam, unsubscribe at any time."]
FOOTER_LINES = ["Privacy Policy | Terms of Use | Cookie Settings | Sitemap", "Powered by WordPress",
                "Back to top ↑", "Follow us on Facebook, Instagram and YouTube", "Leave a comment",
                "Advertise with us | Careers | Press"]

# --------------------------------------------------------------------------
# Spam, short pages, code / lorem / javascript pages.
# --------------------------------------------------------------------------
SPAM_KEYWORDS = ["cheap flights", "replica watches", "weight loss pills", "casino bonus", "designer handbags",
                 "car insurance quotes", "phone cases", "crypto trading signals", "led strip lights",
                 "running shoes sale", "vpn deals", "garden furniture clearance"]
SPAM_SHOUTS = ["BUY NOW!!!", "LIMITED OFFER!!!", "100% FREE!!!", "BEST PRICE GUARANTEED!!!", "CLICK HERE >>>",
               "Don't miss out!!!", "ONLY TODAY!!!", "### HOT DEAL ###", "*** FREE SHIPPING ***", "$$$ SAVE BIG $$$"]
SPAM_ADJ = ["best", "cheap", "cheapest", "discount", "top", "wholesale", "original", "new", "luxury", "genuine"]
SPAM_ITEMS = ["wireless earbuds", "smart watch", "gaming mouse", "phone charger", "sunglasses", "yoga mat",
              "coffee grinder", "desk lamp", "power bank", "bluetooth speaker", "hair dryer", "kitchen scale"]

SHORT_TEXTS = ["Page not found", "Loading...", "404 Not Found", "Access denied.", "Coming soon!", "Redirecting...",
               "Subscribe", "Sign in to continue", "This page has moved.", "Error 503 Service Unavailable",
               "Nothing to see here.", "Thanks for your order!", "Under construction", "Click to read more",
               "Session expired. Please log in again.", "No results found for your search.",
               "Comments are closed.", "Hello world"]

JS_PAGES = [
    "Please enable JavaScript to view this page.\n\nYou need to enable JavaScript to run this app.",
    "JavaScript is disabled in your browser. Please enable JavaScript and reload the page to continue.\nLoading...\nHome | Sign in",
    "This site requires JavaScript. Please enable it in your browser settings and try again.\n"
    "If the problem continues, contact support.\n© 2024 All rights reserved.",
]
LOREM_WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
               "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip "
               "ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla "
               "pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit "
               "anim id est laborum").split()
CODE_SNIPPETS = [
    'function initMenu() {\n  var nav = document.getElementById("{id}");\n  if (!nav) { return; }\n'
    '  nav.addEventListener("click", function (e) {\n    e.preventDefault();\n    nav.classList.toggle("open");\n  });\n}',
    ".{id} { display: flex; margin: 0 auto; max-width: 960px; }\n.{id} a:hover { color: #c0392b; }\n"
    "@media (max-width: 600px) { .{id} { display: block; } }",
    '{"page": {"id": "{id}", "layout": "two-column", "widgets": [{"type": "banner", "slot": 1}, '
    '{"type": "related", "limit": 4}], "tracking": {"enabled": true}}}',
    "window.appState = window.appState || {};\nappState.ready = function (cb) { if (document.readyState !== "
    "'loading') { cb(); } else { document.addEventListener('DOMContentLoaded', cb); } };\n"
    "appState.ready(function () { console.log('{id} ready'); });",
    "def load_{id}(path):\n    with open(path) as fh:\n        return [line.rstrip() for line in fh if line.strip()]",
    "{{ page.title }} | {{ site.name }}\n{% for item in menu %}<li>{{ item.label }}</li>{% endfor %}\n"
    "{% if user %}Welcome back, {{ user.name }}{% else %}Sign in{% endif %}",
]
CODE_NOISE = ["Loading...", "undefined", "[object Object]", "NaN", "null", "TypeError: cannot read property of undefined"]

# --------------------------------------------------------------------------
# Long documents (besides the handbook built from TOPICS): a device manual and a changelog.
# --------------------------------------------------------------------------
MANUAL_PARTS = ["display unit", "outdoor sensor", "rain gauge", "wind vane", "anemometer cups", "base station",
                "battery pack", "wireless link", "data logger", "alarm module", "radio clock", "memory card slot"]
MANUAL_SECTIONS = {
    "Installation": [
        "Before installing the {c}, make sure the base station is switched off and the batteries have been removed.",
        "Place the {c} at least {n} metres away from walls, trees and other objects that could affect its readings.",
        "Fix the {c} with the supplied screws and check that it sits level using the small bubble indicator.",
        "Once the {c} is in position, switch the base station on and wait until the {c} icon stops flashing.",
    ],
    "Calibration": [
        "To calibrate the {c}, open the settings menu, select the {c} entry and hold the SET button for three seconds.",
        "Compare the reading from the {c} with a trusted reference and enter any difference as an offset.",
        "Calibration values for the {c} are stored in memory and are kept even when the batteries are replaced.",
        "If the {c} drifts by more than {n} percent within a week, repeat the calibration and check its location.",
    ],
    "Maintenance": [
        "Clean the {c} every {n} months with a soft, damp cloth, and never use solvents or abrasive cleaners.",
        "Inspect the {c} after storms for loose fittings, cracked plastic or debris caught in moving parts.",
        "Replace the rubber seals on the {c} every two years to keep moisture away from the electronics.",
        "During freezing weather the {c} may report unusual values until any ice has melted.",
    ],
    "Troubleshooting": [
        "If the display shows dashes instead of a value for the {c}, hold the SEARCH button to reconnect it.",
        "When the {c} stops updating, check the batteries first, then reduce the distance to the base station.",
        "Other wireless devices can disturb the {c}, so keep the base station away from routers and microwaves.",
        "If none of these steps help, reset the {c} by removing its batteries for at least {n} minutes.",
    ],
}
CL_COMPONENTS = ["the sync service", "the search index", "the export dialog", "the settings page", "the PDF exporter",
                 "the tag editor", "the home screen widget", "the import wizard", "the offline cache",
                 "the markdown preview", "the backup scheduler", "the sharing panel"]
CL_PROBLEMS = ["crash", "freeze for several seconds", "show an empty list", "lose unsaved changes",
               "display the wrong date", "use too much memory", "ignore the dark theme", "fail without an error",
               "duplicate some entries", "stop responding to keyboard shortcuts"]
CL_CONDITIONS = ["the device was offline", "a note contained very long lines", "the system language was changed",
                 "two windows were open at the same time", "an attachment was larger than 100 MB",
                 "the app resumed from sleep", "a notebook held more than ten thousand notes",
                 "a folder name contained an emoji", "the clocks changed for daylight saving time",
                 "the network connection was slow"]
CL_FEATURES = ["support for nested folders", "a word count in the status bar", "keyboard shortcuts for headings",
               "an option to pin notes to the top of a list", "automatic backups to a local folder",
               "a high-contrast theme", "read-only sharing links", "import from plain text files",
               "a calendar view for dated notes", "spell checking for six more languages",
               "a quick capture window", "checklists with due dates"]
CL_IMPROVE = ["startup time on older devices", "the accuracy of search results", "scrolling in long notes",
              "battery usage during sync", "the layout of the settings page", "error messages shown when sync fails",
              "translations for several languages", "labels for screen readers"]

# Near-duplicate edits.
SWAPS = [("small", "little"), ("often", "frequently"), ("usually", "generally"), ("simple", "easy"),
         ("quickly", "rapidly"), ("many", "numerous"), ("important", "essential"), ("best", "finest"),
         ("start", "begin"), ("large", "big"), ("people", "folks"), ("every", "each"), ("helps", "assists")]
EXTRA_SENTENCES = ["This article was updated to correct a small error in an earlier version.",
                   "Thanks to everyone who wrote in with suggestions after the first edition of this piece.",
                   "We will return to this subject in a future post.",
                   "Readers have pointed out that local conditions can vary considerably."]
HEADERS = ["UPDATED: this post has been revised.", "Posted by admin", "Sponsored content", "Reading time: 4 minutes"]
FOOTERS = ["Originally published on our old blog.", "Filed under: Guides", "Tags: tips, beginners, weekend",
           "Comments (0)"]

# ==========================================================================
# Composition helpers
# ==========================================================================
def make_slots(rng):
    return {"name": rng.choice(NAMES), "city": rng.choice(CITIES), "weekday": rng.choice(WEEKDAYS),
            "n": rng.randint(3, 9), "year": rng.randint(1998, 2021)}

def paragraphs(rng, sents, lo=2, hi=4):
    out, i = [], 0
    while i < len(sents):
        k = rng.randint(lo, hi)
        out.append(" ".join(sents[i:i + k]))
        i += k
    return out

def n_words(text):
    return len(text.split())

def pick_sentences(rng, topic, slots, k):
    return [s.format(**slots) for s in rng.sample(topic["sents"], k)]

def clean_article(rng, topic):
    slots = make_slots(rng)
    k = rng.randint(9, 14)
    sents = pick_sentences(rng, topic, slots, k)
    while n_words(" ".join(sents)) < 170:  # keep every article above ~150 words
        k += 1
        sents = pick_sentences(rng, topic, slots, k)
    title = rng.choice(topic["titles"]).format(**slots)
    return title, "\n\n".join([title] + paragraphs(rng, sents))

def digest_article(rng):
    picks = rng.sample(TOPICS, 3)
    slots = make_slots(rng)
    title = "Weekend Reading: {}, {} and {}".format(*[t["label"] for t in picks])
    parts = [title, "A few things we have been reading and thinking about this week."]
    for t in picks:
        parts.append(rng.choice(t["titles"]).format(**slots))
        parts += paragraphs(rng, pick_sentences(rng, t, slots, rng.randint(6, 9)), 3, 4)
    parts.append("That is all for this week. Enjoy your weekend and see you next time.")
    return title, "\n\n".join(parts)

def boilerplate_page(rng, topic):
    slots = make_slots(rng)
    title = rng.choice(topic["titles"]).format(**slots)
    lines = [rng.choice(NAV_LINES).format(label=topic["label"].title())]
    cookie_on_top = rng.random() < 0.5
    if cookie_on_top:
        lines.append(rng.choice(COOKIE_LINES))
    lines += [title, "Posted on {} {}, 2024 by {}".format(rng.choice(MONTHS), rng.randint(1, 28), rng.choice(NAMES))]
    lines += paragraphs(rng, pick_sentences(rng, topic, slots, rng.randint(4, 7)), 2, 4)
    lines += [rng.choice(SHARE_LINES), rng.choice(SUBSCRIBE_LINES), "Related posts:"]
    lines += ["» " + t.format(**slots) for t in rng.sample(topic["titles"], 3)]
    if not cookie_on_top:
        lines.append(rng.choice(COOKIE_LINES))
    lines += rng.sample(FOOTER_LINES, rng.randint(2, 3))
    lines.append("© 2024 {}. All rights reserved.".format(topic["site"]))  # shared by every page of the site
    return title, "\n".join(lines)

def foreign_article(rng, lang):
    titles, block = FOREIGN[lang]
    sents = lines_of(block)
    title = rng.choice(titles)
    if lang in ("zh", "ja"):  # one fixed article each, sentences in written order
        return title, title + "\n\n" + "".join(sents[:3]) + "\n\n" + "".join(sents[3:])
    chosen = rng.sample(sents, rng.randint(5, min(8, len(sents) - 2)))
    return title, "\n\n".join([title] + paragraphs(rng, chosen, 2, 4))

def spam_page(rng, style):
    kw = rng.choice(SPAM_KEYWORDS)

    def shout():
        return rng.choice(SPAM_SHOUTS)

    def adj():
        return rng.choice(SPAM_ADJ)

    title = "{} | {} Online | Best {} 2024".format(kw.title(), kw.title(), kw.title())
    if style == 0:  # keyword stuffing
        bits = [rng.choice([kw, kw, "{} {}".format(adj(), kw), kw + " online", "buy " + kw,
                            "{} {}".format(kw, rng.choice(CITIES)), shout()]) for _ in range(rng.randint(40, 90))]
        body = " ... ".join(bits)
    elif style == 1:  # price list
        rows = ["* {} {} X{} ... ${}.99 !!! {}".format(adj().title(), rng.choice(SPAM_ITEMS), rng.randint(1, 99),
                                                       rng.randint(1, 199), shout())
                for _ in range(rng.randint(8, 20))]
        body = "### HOT DEALS ON {} ###\n\n".format(kw.upper()) + "\n".join(rows) + "\n\n### ORDER TODAY ###"
    elif style == 2:  # link farm
        rows = [">> http://{}-{}-{}.example/?ref={} click here".format(slugify(kw), adj(), rng.randint(1, 999),
                                                                       rng.randint(1000, 9999))
                for _ in range(rng.randint(10, 20))]
        body = "Top {} sites:\n".format(kw) + "\n".join(rows) + "\nMore links... more links... more links..."
    elif style == 3:  # one line repeated
        line = "{} {} {} {}".format(shout(), adj(), kw, shout())
        body = "\n".join([line] * rng.randint(10, 25))
    else:  # SEO filler
        paras = []
        for city in rng.sample(CITIES, rng.randint(3, 6)):
            paras.append("Looking for {k} in {c}? We offer the {a} {k} in {c} at the {b} price. Our {k} are {a} and "
                         "{b}. Buy {k} today! {k} {k} {k}.".format(k=kw, c=city, a=adj(), b=adj()))
        body = "\n\n".join(paras) + "\n\nTags: " + ", ".join(rng.sample(SPAM_KEYWORDS, 6) + [kw] * 4)
    return title, title + "\n\n" + body

def code_page(rng, i):
    if i < len(JS_PAGES):
        return "javascript required", JS_PAGES[i]
    if i < 6:  # unfinished site templates full of lorem ipsum
        paras = []
        for _ in range(rng.randint(2, 4)):
            words = ["lorem", "ipsum", "dolor", "sit", "amet,"] + [rng.choice(LOREM_WORDS) for _ in range(rng.randint(25, 60))]
            paras.append(" ".join(words).capitalize() + ".")
        head = rng.choice(["Welcome to our website", "Our Services", "About the Team", "Sample Page"])
        return head, "\n\n".join([head] + paras + ["Read more »  Read more »  Read more »"])
    snippets = rng.sample(CODE_SNIPPETS, rng.randint(2, 4))
    tag = rng.choice(["nav", "main", "header", "sidebar", "footer", "widget"]) + str(rng.randint(1, 9))
    parts = [s.replace("{id}", tag) for s in snippets]
    for _ in range(rng.randint(1, 3)):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(CODE_NOISE))
    return "source " + tag, "\n".join(parts)

def long_handbook(rng):
    parts = ["The Household Handbook: Notes on Everyday Skills", "Introduction",
             "This handbook collects short practical notes on a wide range of everyday subjects. Each chapter can "
             "be read on its own, and none of them assumes any special knowledge."]
    for i, t in enumerate(TOPICS, 1):
        parts.append("Chapter {}: {}".format(i, t["label"].capitalize()))
        sents = pick_sentences(rng, t, make_slots(rng), len(t["sents"]))
        parts += paragraphs(rng, sents, 3, 5)
    parts.append("Index and further reading are available in the printed edition.")
    return "The Household Handbook", "\n\n".join(parts)

def long_manual(rng):
    parts = ["Aster K7 Home Weather Station - User Manual", "Read this manual before using the station and keep it "
             "for future reference. The station consists of the components described in the sections below."]
    for sec, templates in MANUAL_SECTIONS.items():
        parts.append("Part: " + sec)
        for j, c in enumerate(MANUAL_PARTS, 1):
            parts.append("{}.{} {}".format(list(MANUAL_SECTIONS).index(sec) + 1, j, c.capitalize()))
            steps = ["Step {}: {}".format(k, t.format(c=c, n=rng.randint(2, 12))) for k, t in enumerate(templates, 1)]
            parts.append("\n".join(steps))
    parts.append("Appendix A: Error codes")
    rows = []
    for code in range(1, 61):
        c = rng.choice(MANUAL_PARTS)
        rows.append("E{:02d}: {} not responding after {} attempts. {}".format(
            code, c.capitalize(), rng.randint(2, 9), rng.choice(MANUAL_SECTIONS["Troubleshooting"]).format(c=c, n=rng.randint(2, 12))))
    parts.append("\n".join(rows))
    parts.append("Appendix B: Warranty\n\nThe station is guaranteed for two years from the date of purchase. The "
                 "guarantee does not cover damage caused by lightning, flooding or incorrect installation.")
    return "Aster K7 manual", "\n\n".join(parts)

def long_changelog(rng):
    parts = ["Tidewater Notes - Release History", "All notable changes to the Tidewater Notes app are listed "
             "below, newest last."]
    major, minor, patch, year, month = 1, 0, 0, 2017, 0
    while len("\n\n".join(parts).encode()) < 34000:
        rows = []
        for _ in range(rng.randint(3, 7)):
            r = rng.random()
            if r < 0.55:
                rows.append("- Fixed an issue where {} would {} when {}.".format(
                    rng.choice(CL_COMPONENTS), rng.choice(CL_PROBLEMS), rng.choice(CL_CONDITIONS)))
            elif r < 0.8:
                rows.append("- Added {}.".format(rng.choice(CL_FEATURES)))
            else:
                rows.append("- Improved {}.".format(rng.choice(CL_IMPROVE)))
        parts.append("Version {}.{}.{} ({} {})\n{}".format(major, minor, patch, MONTHS[month], year, "\n".join(rows)))
        month += rng.randint(1, 2)
        year, month = year + month // 12, month % 12
        if rng.random() < 0.6:
            patch += 1
        elif rng.random() < 0.85:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
    return "Tidewater changelog", "\n\n".join(parts)

# ---- near-duplicate edits (each returns new text, or None if not applicable) ----
SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")

def nd_swap_words(rng, text):
    cands = [(a, b) for a, b in SWAPS if re.search(r"\b%s\b" % a, text)]
    if not cands:
        return None
    for a, b in rng.sample(cands, min(len(cands), rng.randint(1, 2))):
        text = re.sub(r"\b%s\b" % a, b, text, count=1)
    return text

def nd_drop_sentence(rng, text):
    lines = text.split("\n")
    idx = [i for i, ln in enumerate(lines) if len(SENT_SPLIT.split(ln)) > 2]
    if not idx:
        return None
    i = rng.choice(idx)
    sents = SENT_SPLIT.split(lines[i])
    del sents[rng.randrange(len(sents))]
    lines[i] = " ".join(sents)
    return "\n".join(lines)

def nd_add_sentence(rng, text):
    lines = text.split("\n")
    idx = [i for i, ln in enumerate(lines) if n_words(ln) > 25] or [len(lines) - 1]
    i = rng.choice(idx)
    lines[i] = lines[i] + " " + rng.choice(EXTRA_SENTENCES)
    return "\n".join(lines)

def nd_header_footer(rng, text):
    if rng.random() < 0.5:
        return rng.choice(HEADERS) + "\n\n" + text
    return text + "\n\n" + rng.choice(FOOTERS)

def nd_whitespace(rng, text):
    r = rng.randrange(3)
    if r == 0:
        return text.replace("\n\n", "\n\n\n")
    if r == 1:
        return text.replace(". ", ".  ")
    return "\n".join(ln + "   " if ln else ln for ln in text.split("\n")) + "\n"

def nd_case_punct(rng, text):
    r = rng.randrange(3)
    first, _, rest = text.partition("\n")
    if r == 0:
        return first.upper() + "\n" + rest
    if r == 1:
        return text.replace(",", "")
    return text.replace("'", "\u2019").replace(". ", "! ", 1)

NEAR_DUP_EDITS = [nd_swap_words, nd_drop_sentence, nd_add_sentence, nd_header_footer, nd_whitespace, nd_case_punct]

def near_duplicate(rng, text):
    out = text
    for op in rng.sample(NEAR_DUP_EDITS, rng.randint(1, 2)):
        new = op(rng, out)
        out = new if new is not None else out
    if out == text:
        out = nd_header_footer(rng, text)
    return out

# ==========================================================================
# Corpus assembly
# ==========================================================================
class Builder:
    def __init__(self, rng):
        self.rng, self.docs, self.urls = rng, [], set()

    def url(self, domain, title):
        slug = slugify(title)[:60].strip("-") or "page"
        return "https://{}/{}/{:02d}/{}-{}".format(domain, self.rng.randint(2018, 2024), self.rng.randint(1, 12),
                                                 slug, self.rng.randint(100, 99999))

    def copy_url(self, src_url, kind):
        """URL of a re-published copy: the source's path on a mirror / scraper / repost host."""
        host, path = src_url[len("https://"):].split("/", 1)
        if kind == "exact":
            host = self.rng.choice(["mirror." + host, "www." + host, "copycat-{}.example".format(self.rng.randint(1, 50))])
        else:
            host = "reposts-{}.example".format(self.rng.randint(1, 30))
        return "https://{}/{}".format(host, path)

    def add(self, cat, title, text, domain=None, lang="en", src=None, url=None):
        url = url or self.url(domain, title)
        while url in self.urls:  # keep URLs unique
            url += "{}utm_source=feed{}".format("&" if "?" in url else "?", self.rng.randint(1, 99))
        self.urls.add(url)
        doc = {"cat": cat, "text": text, "url": url, "lang": lang, "src": src}
        self.docs.append(doc)
        return doc

def build_docs(rng):
    b = Builder(rng)
    for i in range(COUNTS["clean"]):
        t = TOPICS[i % len(TOPICS)]
        b.add("clean", *clean_article(rng, t), t["domain"])
    for _ in range(COUNTS["clean_digest"]):
        b.add("clean", *digest_article(rng), "weekend-reading.example")
    for i in range(COUNTS["boilerplate"]):
        t = TOPICS[rng.randrange(len(TOPICS))]
        b.add("boilerplate", *boilerplate_page(rng, t), t["domain"])
    foreign = []
    for lang, n in FOREIGN_COUNTS.items():
        for _ in range(n):
            foreign.append(b.add("foreign", *foreign_article(rng, lang), FOREIGN_SITES[lang], lang=lang))
    for d in rng.sample([d for d in foreign if d["lang"] not in ("zh", "ja")], MISLABELLED_FOREIGN):
        d["declared"] = "en"
    for i in range(COUNTS["spam"]):
        title, text = spam_page(rng, i % 5)
        b.add("spam", title, text, "{}-deals-{}.example".format(slugify(title.split("|")[0]), rng.randint(1, 99)))
    for s in SHORT_TEXTS[:COUNTS["short"]]:
        b.add("short", s, s, rng.choice([t["domain"] for t in TOPICS]))
    for i in range(COUNTS["code_lorem_js"]):
        title, text = code_page(rng, i)
        b.add("code_lorem_js", title, text, rng.choice(["static-assets.example", "app-preview.example",
                                                        "themes-demo.example"]))
    for fn in (long_handbook, long_manual, long_changelog)[:COUNTS["long"]]:
        b.add("long", *fn(rng), "docs-library.example")

    # Exact duplicates: 25 distinct sources, the first 3 copied twice (clusters of 3).
    pool = [d for d in b.docs if d["cat"] in ("clean", "boilerplate", "foreign")]
    srcs = rng.sample(pool, COUNTS["exact_dup"] - 3)
    srcs += srcs[:3]
    for s in srcs:
        b.add("exact_dup", "", s["text"], lang=s["lang"], src=s, url=b.copy_url(s["url"], "exact"))
    # Near duplicates: small edits of clean and boilerplate pages not used above.
    pool = [d for d in b.docs if d["cat"] in ("clean", "boilerplate") and d not in srcs]
    for s in rng.sample(pool, COUNTS["near_dup"]):
        b.add("near_dup", "", near_duplicate(rng, s["text"]), lang=s["lang"], src=s,
              url=b.copy_url(s["url"], "near"))
    return b.docs

def write_corpus(docs, rng):
    rng.shuffle(docs)
    n = len(docs)
    bounds = [0, n // 3, 2 * n // 3, n]
    names = ["web-0.jsonl", "web-1.jsonl", "web-2.jsonl.gz"]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for f, name in enumerate(names):
        lines = []
        for j, d in enumerate(docs[bounds[f]:bounds[f + 1]]):
            d["id"], d["file"] = "web-{}-{:05d}".format(f, j), f
            rec = {"id": d["id"], "text": d["text"], "url": d["url"], "source": "web",
                   "meta": {"crawl": rng.choice(CRAWLS), "lang_hint": d.get("declared", d["lang"])}}
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        data = "".join(lines).encode("utf-8")
        path = OUT_DIR / name
        if name.endswith(".gz"):
            with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
                gz.write(data)
        else:
            path.write_bytes(data)
    return [OUT_DIR / nm for nm in names]

def verify(paths):
    ids = set()
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                assert set(rec) == {"id", "text", "url", "source", "meta"}, rec["id"]
                assert rec["id"] not in ids, rec["id"]
                ids.add(rec["id"])
    return len(ids)

def main():
    rng = random.Random(SEED)
    docs = build_docs(rng)
    paths = write_corpus(docs, rng)
    n = verify(paths)

    print("category counts:")
    cats = {}
    for d in docs:
        cats[d["cat"]] = cats.get(d["cat"], 0) + 1
    for c in ("clean", "boilerplate", "exact_dup", "near_dup", "foreign", "spam", "short", "code_lorem_js", "long"):
        print("  {:<14} {:>4}  ({:.1f}%)".format(c, cats[c], 100.0 * cats[c] / len(docs)))
    cross = sum(d["file"] != d["src"]["file"] for d in docs if d["cat"] == "exact_dup")
    print("exact duplicates in a different file than their source: {} of {}".format(cross, cats["exact_dup"]))
    clean_words = [n_words(d["text"]) for d in docs if d["cat"] == "clean"]
    print("clean prose words per doc: min {} max {}".format(min(clean_words), max(clean_words)))
    print("long docs (KB): {}".format([round(len(d["text"].encode()) / 1024, 1) for d in docs if d["cat"] == "long"]))
    print("files:")
    total = 0
    for f, p in enumerate(paths):
        size = p.stat().st_size
        total += size
        n_docs = sum(d["file"] == f for d in docs)
        print("  {:<16} {:>4} docs {:>8} bytes  sha256 {}".format(
            p.name, n_docs, size, hashlib.sha256(p.read_bytes()).hexdigest()[:16]))
    text_bytes = sum(len(d["text"].encode()) for d in docs)
    print("total: {} documents, {} bytes on disk, {} bytes of text".format(n, total, text_bytes))


if __name__ == "__main__":
    main()
